"""The model signature, the same for every stage (the one definition; ``nanodet_ref.model`` names its outputs
with it, the converters export and record it, the runners map every artifact onto it):

  input  ``input``  [1, 3, H, W] float32, BGR, normalised with the config's mean/std (NCHW)
  outputs, per stride s in the config's strides (8, 16, 32; NanoDet-Plus adds 64):
    ``cls_pred_stride_{s}``  [1, h_s * w_s, num_classes]      sigmoid class scores, row-major over the map
    ``dis_pred_stride_{s}``  [1, h_s * w_s, 4 * (reg_max+1)]  raw box-distribution logits (l, t, r, b bins)
  where h_s, w_s = ``cfg.feature_sizes()``.

That is the default layout, ``per-level``. ``--layout upstream`` exports upstream's own signature instead
(RangiLyu/nanodet ``tools/export_onnx.py`` and every head's ``_forward_onnx``): input ``data``, one output
``output`` [1, N, num_classes + 4 * (reg_max+1)], the levels stride-ascending, each level's map row-major, per
point the sigmoid class scores then the raw distribution logits. The same numbers, packed: every stage still
reads them as the per-level outputs above, as views of the one output (:func:`upstream_views`, :func:`as_per_level`,
:func:`split_upstream`), so the comparators and THE decoder are the same for both layouts.

Only the config is read (``cfg``: ``nanodet_ref.config.Config``), so nothing here imports torch.
"""
from __future__ import annotations

from .errors import UserError
from .io_spec import IoSpec, OutputMap, View

INPUT_NAME = "input"
DEFAULT_LAYOUT = "per-level"
UPSTREAM_LAYOUT = "upstream"
LAYOUTS = (DEFAULT_LAYOUT, UPSTREAM_LAYOUT)
UPSTREAM_INPUT_NAME = "data"      # upstream's tools/export_onnx.py names (its C++ demos feed and fetch these)
UPSTREAM_OUTPUT_NAME = "output"


# The heads whose upstream ``_forward_onnx`` gives that single output (read at RangiLyu/nanodet be9b4a9: sigmoid on
# the class channels, logits raw); upstream's SimpleConvHead (NanoDet-Plus's training-only aux head) has none.
UPSTREAM_EXPORT_HEADS = ("GFLHead", "NanoDetHead", "NanoDetPlusHead")


def check_layout(layout) -> str:
    """``layout`` where it is one of :data:`LAYOUTS`, else a UserError naming them."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout: unknown '{layout}' (choose {' or '.join(LAYOUTS)})")
    return layout


def check_layout_applies(cfg, layout) -> str:
    """``layout`` where this model can be exported in it, else a UserError saying why: upstream's layout only
    exists for the heads upstream exports that way (:data:`UPSTREAM_EXPORT_HEADS`)."""
    head = cfg.head.get("name")
    if check_layout(layout) == UPSTREAM_LAYOUT and head not in UPSTREAM_EXPORT_HEADS:
        where = f"{cfg.path}: " if cfg.path else ""
        raise UserError(f"{where}--layout upstream: head '{head}' has no upstream single-output export (upstream "
                        f"exports one for {', '.join(UPSTREAM_EXPORT_HEADS)})")
    return layout


def output_names(strides) -> list[str]:
    """Every class-score output, then every box-distribution output, in stride order."""
    return [f"cls_pred_stride_{s}" for s in strides] + [f"dis_pred_stride_{s}" for s in strides]


def output_shapes(cfg) -> dict[str, list[int]]:
    """{output name: [1, HW, channels]} in :func:`output_names` order."""
    sizes = [fh * fw for fh, fw in cfg.feature_sizes()]
    shapes = {f"cls_pred_stride_{s}": [1, hw, cfg.num_classes] for s, hw in zip(cfg.strides, sizes)}
    shapes.update({f"dis_pred_stride_{s}": [1, hw, 4 * (cfg.reg_max + 1)] for s, hw in zip(cfg.strides, sizes)})
    return shapes


def upstream_views(cfg) -> dict[str, View]:
    """Where each per-level output lies in upstream's single output: {per-level name: View} (rows: the level's
    points, the levels one after the other stride-ascending; channels: scores first, then the logits)."""
    views, start, scores = {}, 0, cfg.num_classes
    packed = scores + 4 * (cfg.reg_max + 1)
    for s, (fh, fw) in zip(cfg.strides, cfg.feature_sizes()):
        rows = (start, start + fh * fw)
        views[f"cls_pred_stride_{s}"] = View(UPSTREAM_OUTPUT_NAME, rows, (0, scores))
        views[f"dis_pred_stride_{s}"] = View(UPSTREAM_OUTPUT_NAME, rows, (scores, packed))
        start = rows[1]
    return {name: views[name] for name in output_names(cfg.strides)}


def split_upstream(output, cfg) -> dict:
    """Upstream's single output [N, rows, channels] -> {per-level name: its view} (numpy or torch: no copy)."""
    where = f"{UPSTREAM_OUTPUT_NAME} of {cfg.name}"
    rows, channels = export_output_shapes(cfg, UPSTREAM_LAYOUT)[UPSTREAM_OUTPUT_NAME][1:]
    if list(output.shape[1:]) != [rows, channels]:
        raise UserError(f"{where}: shape {list(output.shape)}, expected [N, {rows}, {channels}]")
    return {name: view.take(output, where) for name, view in upstream_views(cfg).items()}


def export_input_name(layout: str = DEFAULT_LAYOUT) -> str:
    """The exported model's input name in ``layout``."""
    return UPSTREAM_INPUT_NAME if check_layout(layout) == UPSTREAM_LAYOUT else INPUT_NAME


def export_output_shapes(cfg, layout: str = DEFAULT_LAYOUT) -> dict[str, list[int]]:
    """{output name: shape} of the exported model in ``layout``: the per-level outputs, or upstream's one."""
    if check_layout(layout) == DEFAULT_LAYOUT:
        return output_shapes(cfg)
    total = sum(fh * fw for fh, fw in cfg.feature_sizes())
    return {UPSTREAM_OUTPUT_NAME: [1, total, cfg.num_classes + 4 * (cfg.reg_max + 1)]}


def export_output_names(cfg, layout: str = DEFAULT_LAYOUT) -> list[str]:
    """The exported model's output names in ``layout``, in order."""
    return output_names(cfg.strides) if check_layout(layout) == DEFAULT_LAYOUT else [UPSTREAM_OUTPUT_NAME]


def as_per_level(spec: IoSpec, cfg, layout: str = DEFAULT_LAYOUT) -> IoSpec:
    """An artifact's io spec by its export names -> by the per-level signature names (what every runner, comparator
    and the decoder read): unchanged in the per-level layout; in the upstream one, each per-level output becomes a
    view of the artifact tensor that upstream's ``output`` maps to. UserError where ``spec`` lacks an output."""
    spec.require(export_output_names(cfg, layout), "io spec")
    if check_layout(layout) == DEFAULT_LAYOUT:
        return spec
    packed = spec.outputs[UPSTREAM_OUTPUT_NAME]
    outputs = {name: OutputMap(packed.name, packed.transpose, view) for name, view in upstream_views(cfg).items()}
    return IoSpec(spec.input_name, spec.layout, outputs, spec.input_shape, spec.input_key, spec.onnx_input,
                  spec.signature)


def input_shape(cfg) -> list[int]:
    """[1, 3, H, W] of the config's input size."""
    w, h = cfg.input_size
    return [1, 3, h, w]


def signature(cfg, layout: str = DEFAULT_LAYOUT) -> dict:
    """The model's input/output contract in ``layout``, for the manifest."""
    return {"layout": check_layout(layout),
            "input": {"name": export_input_name(layout), "shape": input_shape(cfg), "dtype": "float32",
                      "layout": "NCHW", "colour": "BGR", "mean": list(cfg.mean), "std": list(cfg.std)},
            "outputs": export_output_shapes(cfg, layout)}


def signature_io_spec(cfg, layout: str = DEFAULT_LAYOUT) -> IoSpec:
    """The io spec of an artifact that has the model signature itself (the ONNX stages), read per level."""
    spec = IoSpec.identity(export_output_names(cfg, layout), export_input_name(layout), input_shape(cfg))
    return as_per_level(spec, cfg, layout)
