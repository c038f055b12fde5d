"""Write the JavaScript detection module (``nanodet.mjs``) next to a TFJS artifact's model.json.

The module is rendered from the template ``js/nanodet.mjs`` by filling in the model's own constants (input size
and layout, tensor names from the io spec and the output layout they show, BGR mean/std, strides, reg_max, decode
thresholds, class names), so a user gets one file that loads that model and returns detections in image pixels
exactly as the Python reference decoder does. Why here: the constants live in the config and the io spec, which
only the toolkit knows.
"""
from __future__ import annotations

import json
from pathlib import Path

from contracts.atomic import write_text
from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.js_assets import packaged_js
from contracts.signature import DEFAULT_LAYOUT, UPSTREAM_LAYOUT, output_names, upstream_views

TEMPLATE = packaged_js() / "nanodet.mjs"
MODULE_NAME = "nanodet.mjs"
DECODER_NAME = "nanodet_decode.mjs"   # the decoding half, imported by nanodet.mjs from beside it, copied as is
WARP_NAME = "nanodet_warp.mjs"       # cv2.warpPerspective bit for bit, imported by nanodet.mjs, copied as is
COMPANION_NAMES = (DECODER_NAME, WARP_NAME)
PLACEHOLDER = "/*@NANODET_CONFIG@*/ null"


def model_file(tfjs_dir: Path) -> str:
    """The graph model's JSON file name in ``tfjs_dir`` (model.json, or the only .json there)."""
    tfjs_dir = Path(tfjs_dir)
    if (tfjs_dir / "model.json").is_file():
        return "model.json"
    found = sorted(p.name for p in tfjs_dir.glob("*.json"))
    if len(found) != 1:
        raise UserError(f"{tfjs_dir}: no model.json (a TFJS graph model folder is needed)")
    return found[0]


def module_outputs(cfg, spec: IoSpec) -> tuple[str, dict]:
    """(layout, {the model's output name: its TFJS tensor, or {name, transpose}}): the per-level outputs, or, where
    the io spec reads them as views of one packed tensor, upstream's single output (the module splits it)."""
    outputs = {}
    for sig in output_names(cfg.strides):
        target = spec.outputs[sig]
        value = target.name if target.transpose is None else {"name": target.name, "transpose": list(target.transpose)}
        outputs[target.view.of if target.view is not None else sig] = value
    views = [spec.outputs[sig].view for sig in output_names(cfg.strides)]
    if all(v is None for v in views):
        return DEFAULT_LAYOUT, outputs
    if views != list(upstream_views(cfg).values()):
        raise UserError("io spec: its output views are not upstream's single-output layout (the JS module reads "
                        "only that one)")
    return UPSTREAM_LAYOUT, outputs


def module_config(cfg, io_spec: IoSpec | dict, model_json: str = "model.json") -> dict:
    """The constants the JS module needs, from the config and the artifact's io spec (or its JSON form)."""
    spec = IoSpec.of(io_spec, where="io spec", required_outputs=output_names(cfg.strides))
    layout, outputs = module_outputs(cfg, spec)
    decode = cfg.decode
    width, height = cfg.input_size
    return {
        "model": cfg.name,
        "modelFile": model_json,
        "inputName": spec.input_name,
        "inputLayout": spec.layout,
        "inputWidth": int(width),
        "inputHeight": int(height),
        "keepRatio": bool(cfg.keep_ratio),
        "mean": [float(v) for v in cfg.mean],  # BGR
        "std": [float(v) for v in cfg.std],  # BGR
        "strides": [int(s) for s in cfg.strides],
        "regMax": int(cfg.reg_max),
        "priorOffset": float(cfg.prior_offset),  # point centres at (col + offset) * stride: 0.5 legacy, 0 Plus
        "numClasses": int(cfg.num_classes),
        "scoreThreshold": float(decode["score_threshold"]),
        "nmsIou": float(decode["nms_iou"]),
        "maxDetections": int(decode["max_detections"]),
        "nmsPre": int(decode.get("nms_pre") or 0),
        "layout": layout,   # per-level, or upstream: one output [1, N, numClasses + 4 (regMax + 1)], split by decode
        "outputs": outputs,
        "classNames": list(cfg.class_names),
    }


def render_js_module(cfg, io_spec: IoSpec | dict, model_json: str = "model.json") -> str:
    """The template with this model's constants filled in."""
    if not TEMPLATE.is_file():
        raise UserError(f"{TEMPLATE}: JS module template missing (broken checkout?)")
    text = TEMPLATE.read_text(encoding="utf-8")
    if text.count(PLACEHOLDER) != 1:
        raise RuntimeError(f"{TEMPLATE}: expected exactly one '{PLACEHOLDER}' placeholder")
    values = module_config(cfg, io_spec, model_json)
    constants = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in values.items()) + ",\n}"

    return text.replace(PLACEHOLDER, constants, 1)


def write_js_module(tfjs_dir: Path, cfg, io_spec: IoSpec | dict) -> Path:
    """Render ``nanodet.mjs`` into ``tfjs_dir`` (beside model.json), with the files it imports (``nanodet_decode.mjs``,
    ``nanodet_warp.mjs``), each through a temp file + rename; returns the module's path."""
    tfjs_dir = Path(tfjs_dir)
    if not tfjs_dir.is_dir():
        raise UserError(f"{tfjs_dir}: TFJS artifact folder not found")
    text = render_js_module(cfg, io_spec, model_file(tfjs_dir))
    for name in COMPANION_NAMES:
        source = packaged_js() / name
        if not source.is_file():
            raise UserError(f"{source}: JS module file missing (broken checkout?)")
        write_text(tfjs_dir / name, source.read_text(encoding="utf-8"))
    target = tfjs_dir / MODULE_NAME
    write_text(target, text)
    return target
