"""The staged converters: PyTorch -> ONNX -> simplified ONNX -> TF SavedModel -> TFJS graph model.

One module per stage (``stage_onnx``, ``stage_onnx_sim``, ``stage_saved_model``, ``stage_tfjs``), each with the
same shape (input artifact + options -> output artifact + manifest entry); ``pipeline`` chains them with caching
and atomic writes (``contracts.atomic``) into the manifest (``contracts.manifest``); the command line is
``python -m commands convert`` (``commands.convert``).
Heavy libraries (torch, TensorFlow) are imported only inside the stage that needs them.
"""
