"""The model signature, the same for every stage (the one definition; ``nanodet_ref.model`` names its outputs
with it, the converters export and record it, the runners map every artifact onto it):

  input  ``input``  [1, 3, H, W] float32, BGR, normalised with the config's mean/std (NCHW)
  outputs, per stride s in the config's strides (8, 16, 32; NanoDet-Plus adds 64):
    ``cls_pred_stride_{s}``  [1, h_s * w_s, num_classes]      sigmoid class scores, row-major over the map
    ``dis_pred_stride_{s}``  [1, h_s * w_s, 4 * (reg_max+1)]  raw box-distribution logits (l, t, r, b bins)
  where h_s, w_s = ``cfg.feature_sizes()``.

Only the config is read (``cfg``: ``nanodet_ref.config.Config``), so nothing here imports torch.
"""
from __future__ import annotations

from .io_spec import IoSpec

INPUT_NAME = "input"


def output_names(strides) -> list[str]:
    """Every class-score output, then every box-distribution output, in stride order."""
    return [f"cls_pred_stride_{s}" for s in strides] + [f"dis_pred_stride_{s}" for s in strides]


def output_shapes(cfg) -> dict[str, list[int]]:
    """{output name: [1, HW, channels]} in :func:`output_names` order."""
    sizes = [fh * fw for fh, fw in cfg.feature_sizes()]
    shapes = {f"cls_pred_stride_{s}": [1, hw, cfg.num_classes] for s, hw in zip(cfg.strides, sizes)}
    shapes.update({f"dis_pred_stride_{s}": [1, hw, 4 * (cfg.reg_max + 1)] for s, hw in zip(cfg.strides, sizes)})
    return shapes


def input_shape(cfg) -> list[int]:
    """[1, 3, H, W] of the config's input size."""
    w, h = cfg.input_size
    return [1, 3, h, w]


def signature(cfg) -> dict:
    """The model's input/output contract, for the manifest."""
    return {"input": {"name": INPUT_NAME, "shape": input_shape(cfg), "dtype": "float32", "layout": "NCHW",
                      "colour": "BGR", "mean": list(cfg.mean), "std": list(cfg.std)},
            "outputs": output_shapes(cfg)}


def signature_io_spec(cfg) -> IoSpec:
    """The io spec of an artifact that has the model signature itself (the ONNX stages)."""
    return IoSpec.identity(output_names(cfg.strides), INPUT_NAME, input_shape(cfg))
