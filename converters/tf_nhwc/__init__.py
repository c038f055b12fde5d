"""SavedModel backend ``tf_nhwc``: our own exact ONNX -> TensorFlow translation that keeps activations in NHWC.

Why: onnx-tf keeps ONNX's NCHW layout and wraps every conv in NCHW<->NHWC Transposes (142 in NanoDet-m), which
also stops TF from fusing conv + bias + LeakyRelu; onnx2tf lays the graph out in NHWC but its TFJS model does not
run (grouped-conv confusion). This package translates the small op set of the simplified NanoDet graphs itself:

- ``layout``: the value model. 4-D activations are stored NHWC; each ONNX value is a TF tensor plus the
  permutation from its ONNX (logical) layout. Transpose nodes only change that permutation; Reshapes become plain
  reshapes where the memory order allows it (proven on index arrays), as for the head's ``[N,C,H*W] ->
  [N,H*W,C]``.
- ``translator``: the walk over the ONNX graph; ``op_table``: which function translates which op type.
- The exact translations by op family: ``conv`` (Conv2D / depthwise, padding exactly as ONNX says, BiasAdd, or an
  identity batch norm where the BiasAdd form aborts TensorFlow's oneDNN path), ``padding``, ``pooling`` (pools,
  nearest resize), ``elementwise`` (activations, arithmetic, constants), ``shape_ops`` (Reshape, Transpose,
  Concat, Split, Slice).
- ``speed_rewrites``: exact forms TFJS's wasm backend runs faster (Conv + Split as one conv per part, LeakyRelu
  as the Prelu pattern, a ShuffleNet unit's Concat + shuffle as one outer-axis concat and a 2-D transpose, its
  channel halves as a max pool and a nearest resize on views).
- ``backend``: ``to_saved_model`` (the entry ``converters.backend_tf_nhwc`` exports); ``self_check``: the
  SavedModel against onnxruntime on a seeded input, written to ``tf_nhwc_check.json`` inside it.
Any op, attribute or pattern outside this set is refused with a UserError naming the node, never guessed.
"""
