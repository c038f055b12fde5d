"""The contracts every other package shares: the lowest floor of the toolkit, importing neither torch nor
TensorFlow at module load (numpy only), and nothing of the toolkit above it.

The spine, lowest first: ``contracts`` -> ``nanodet_ref`` -> ``patches`` -> ``converters`` -> ``validation`` ->
the command lines; a module never imports one of a higher floor (``tests/test_import_floors.py``).

==================  ===========================================================================================
``errors``          one-line errors for the user (``UserError``, exit 2) and the wrapper every command line uses
``paths``           the project root, the shared data folder (``NANODET_SHARED``), the artifacts folder
``hashing``         sha256 of files and folders, and the cache keys built from them
``signature``       the model signature: input name, output names and shapes, the manifest's ``signature``
``io_spec``         ``IoSpec``: how an artifact's own tensor names and layout map onto the signature
``presets``         the io specs of foreign artifacts we know (the peer's TFJS model)
``manifest``        ``manifest.json`` of an artifact folder: the one reader and the one writer
``atomic``          atomic file and folder writes, and the sweep of what an interrupted write left
``tf_environment``  importing TensorFlow, onnx-tf and tensorflowjs next to each other, with TF's noise filtered
``stderr_filter``   the line filter behind that (a child process that survives the parent's death)
``node_runtime``    which Node.js the TFJS steps need, and the check that says so
==================  ===========================================================================================
"""
