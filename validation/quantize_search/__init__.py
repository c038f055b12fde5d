"""``--quantize auto``: per-weight TFJS storage types chosen by measuring (docs/quantization.md).

``planner.AutoQuantizer`` is what the convert command lends the TFJS stage; ``affine`` reproduces tensorflowjs'
uint8 / float16 storage, ``weight_units`` pairs TFJS weights with their ONNX twins, ``simulator`` runs the ONNX model
with replaced weights, ``fidelity`` and ``estimate`` measure each weight's error, ``walk`` orders and stops,
``halves`` splits the images into the choice and held-back halves, ``report_md`` puts it in words.
"""
