"""Check the JavaScript detection module (``tfjs/nanodet.mjs``) that ships with a TFJS artifact, in Node.

Two checks, both with TFJS's own kernels (wasm backend by default):

1. decode parity: every image is preprocessed by the Python reference; Node runs the TFJS model on that exact
   tensor and hands the raw outputs to the module's ``decode``; the Python reference decoder decodes the same
   outputs. Same labels in the same order, boxes within 0.5 px, scores within 1e-4.
2. end to end: the module's ``detect`` (its own letterbox or stretch warp, bit for bit cv2.warpPerspective's,
   normalisation, model run and decoding) gives the reference pipeline's detections on the same TFJS model
   (OpenCV preprocessing + reference decoder), image by image within the tolerances of check 1, and its COCO AP:
   on the same pixels (OpenCV's decoding handed over as RGB) exactly (``AP_TOL_SAME_PIXELS`` 0), and from the
   image files decoded in Node by sharp (libvips with mozjpeg, a libjpeg-turbo fork, and libpng) within
   ``AP_TOL_JPEG``, exactly where every file decodes to OpenCV's pixels; then it also equals the tfjs stage's AP
   that ``validate`` recorded in validation.json, where that was measured on the same images. sharp is told to
   decode as OpenCV's IMREAD_COLOR does (embedded ICC profiles ignored: sharp would otherwise colour-convert 8 of
   the 40 shared JPEGs, up to 70 levels off); so decoded it gives bit-identical pixels to OpenCV 5 on all 40
   shared COCO images (max difference 0, reported as ``decoder_pixels``). A pure-JS decoder (jpeg-js, pixels ~0.4
   levels off) moved AP by 0.0021 on this set, which is why it was replaced.

Why: the module is what JS users run; it re-implements pre- and post-processing, so it must be shown to be the
reference, not just "look right".  CLI: ``python -m commands js-check --artifact artifacts/m-416``.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.js_assets import install_hint, js_dir
from contracts.signature import (UPSTREAM_LAYOUT, UPSTREAM_OUTPUT_NAME, export_output_shapes, output_names,
                                 split_upstream)
from nanodet_ref.decode import Detection, decode
from nanodet_ref.preprocess import preprocess_file

SCRIPT = "nanodet_module_check.mjs"   # in contracts.js_assets.js_dir()
BOX_TOL_PX = 0.5
SCORE_TOL = 1e-4
AP_TOL_SAME_PIXELS = 0.0  # the module's input tensor is the reference's bit for bit (tests/test_js_warp_exact.py)
AP_TOL_JPEG = 0.002  # from the image files, decoded by sharp in Node (see above)
FILE_SUFFIXES = (".jpg", ".jpeg", ".png")  # handed to Node as files; other formats as OpenCV pixels
DECODER = "sharp"  # the npm package that decodes image files in js/nanodet_module_check.mjs


def node_command() -> list[str]:
    from validation.runners.tfjs_node import node_executable

    return [node_executable(), str(js_dir() / SCRIPT)]


def module_paths(artifact: Path) -> tuple[Path, Path]:
    """(nanodet.mjs, model json) of an artifact folder (the one holding tfjs/) or of a tfjs folder itself."""
    artifact = Path(artifact).resolve()  # Node runs in js/: paths must not be relative
    tfjs = artifact / "tfjs" if (artifact / "tfjs").is_dir() else artifact
    module = tfjs / "nanodet.mjs"
    if not module.is_file():
        raise UserError(f"{tfjs}: no nanodet.mjs (convert the model first, or write it with "
                        f"converters.js_module.write_js_module)")
    models = [tfjs / "model.json"] if (tfjs / "model.json").is_file() else sorted(tfjs.glob("*.json"))
    if len(models) != 1:
        raise UserError(f"{tfjs}: no TFJS model.json")
    return module, models[0]


def check_node_modules() -> None:
    if not (js_dir() / "node_modules" / DECODER).is_dir():
        raise UserError(f"{js_dir() / 'node_modules'}: npm packages missing ({DECODER}): {install_hint()}")


def run_node(command: str, module: Path | None, model: Path | None, extra: list[str], backend: str = "wasm",
             timeout: float = 1800) -> None:
    check_node_modules()
    cmd = node_command() + [command]
    if module is not None:
        cmd += ["--module", str(module)]
    if model is not None:
        cmd += ["--model", str(model), "--backend", backend]
    proc = subprocess.run(cmd + extra, cwd=js_dir(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"node {SCRIPT} {command} failed:\n{proc.stderr.strip()[-3000:]}")


def decoder_pixels(paths: list[Path], work: Path) -> dict:
    """The RGB pixels Node's decoder (sharp, as the check script calls it) gives for the image files that
    ``js_detect`` hands over as files, against OpenCV's (the reference's ``read_image``)."""
    import cv2

    from nanodet_ref.preprocess import read_image

    files = [p for p in paths if p.suffix.lower() in FILE_SUFFIXES]
    items = [{"file": str(Path(p).resolve()), "out": str(work / f"pix{i}.rgb")} for i, p in enumerate(files)]
    (work / "pixels.json").write_text(json.dumps(items))
    run_node("pixels", None, None, ["--list", str(work / "pixels.json")])
    max_diff, differing = 0, []
    for p, item in zip(files, items):
        ref = cv2.cvtColor(read_image(p), cv2.COLOR_BGR2RGB)
        size = json.loads(Path(item["out"] + ".json").read_text())
        got = np.fromfile(item["out"], np.uint8)
        if (size["height"], size["width"], size["channels"]) != ref.shape or got.size != ref.size:
            differing.append(p.name)
            max_diff = 255
            continue
        diff = int(np.abs(got.reshape(ref.shape).astype(np.int16) - ref).max())
        if diff:
            differing.append(p.name)
            max_diff = max(max_diff, diff)
    return {"images": len(files), "max_abs_diff": max_diff, "differing_images": differing}


def as_detections(items: list[dict]) -> list[Detection]:
    return [Detection(int(d["label"]), float(d["score"]), tuple(float(v) for v in d["box"])) for d in items]


def compare_detections(ref: list[Detection], got: list[Detection]) -> dict:
    """Same labels in the same order; max box and score differences."""
    out = {"ref": len(ref), "js": len(got), "same_labels": len(ref) == len(got), "box_max_px": 0.0,
           "score_max": 0.0}
    if out["same_labels"]:
        out["same_labels"] = all(r.label == g.label for r, g in zip(ref, got))
    if out["same_labels"] and ref:
        out["box_max_px"] = float(max(np.abs(np.subtract(r.box, g.box)).max() for r, g in zip(ref, got)))
        out["score_max"] = float(max(abs(r.score - g.score) for r, g in zip(ref, got)))
    out["ok"] = out["same_labels"] and out["box_max_px"] <= BOX_TOL_PX and out["score_max"] <= SCORE_TOL
    return out


def node_raw_outputs(work: Path, image_id: str, cfg) -> dict[str, np.ndarray]:
    """The raw outputs Node wrote for one image (``<id>.<output name>.f32``) as per-level [HW, C] arrays; upstream's
    single output (a model converted with ``--layout upstream``) split by the views every runner reads."""
    packed = work / f"{image_id}.{UPSTREAM_OUTPUT_NAME}.f32"
    if packed.is_file():
        shape = export_output_shapes(cfg, UPSTREAM_LAYOUT)[UPSTREAM_OUTPUT_NAME]
        views = split_upstream(np.fromfile(packed, np.float32).reshape(shape), cfg)
        return {n: v[0] for n, v in views.items()}
    outputs = {n: np.fromfile(work / f"{image_id}.{n}.f32", np.float32) for n in output_names(cfg.strides)}
    for s in cfg.strides:  # flat arrays -> [HW, C]
        outputs[f"cls_pred_stride_{s}"] = outputs[f"cls_pred_stride_{s}"].reshape(-1, cfg.num_classes)
        outputs[f"dis_pred_stride_{s}"] = outputs[f"dis_pred_stride_{s}"].reshape(-1, 4 * (cfg.reg_max + 1))
    return outputs


def decode_parity(cfg, module: Path, model: Path, paths: list[Path], work: Path, backend: str = "wasm"):
    """Check 1. Returns (summary, {image name: reference detections in image pixels})."""
    items, metas = [], {}
    for i, p in enumerate(paths):
        x, warp, hw = preprocess_file(p, cfg)
        x.astype(np.float32).tofile(work / f"in{i}.f32")
        items.append({"id": p.name, "input": str(work / f"in{i}.f32"), "warp": warp.ravel().tolist(),
                      "width": int(hw[1]), "height": int(hw[0])})
        metas[p.name] = (warp, (int(hw[0]), int(hw[1])))
    (work / "parity.json").write_text(json.dumps(items))
    run_node("parity", module, model, ["--list", str(work / "parity.json"), "--out", str(work)], backend)
    js = json.loads((work / "detections.json").read_text())
    per_image, reference = {}, {}
    for p in paths:
        outputs = node_raw_outputs(work, p.name, cfg)
        warp, hw = metas[p.name]
        ref = decode(outputs, cfg, warp=warp, image_hw=hw)
        reference[p.name] = ref
        per_image[p.name] = compare_detections(ref, as_detections(js["detections"][p.name]))
    bad = sorted(k for k, v in per_image.items() if not v["ok"])
    summary = {
        "images": len(paths), "backend": js.get("backend"),
        "detections": sum(v["ref"] for v in per_image.values()),
        "box_max_px": max((v["box_max_px"] for v in per_image.values()), default=0.0),
        "score_max": max((v["score_max"] for v in per_image.values()), default=0.0),
        "failed_images": bad, "ok": not bad,
        "tolerances": {"box_px": BOX_TOL_PX, "score": SCORE_TOL},
    }
    return summary, reference


def js_detect(module: Path, model: Path, paths: list[Path], work: Path, backend: str = "wasm",
              same_pixels: bool = False) -> dict:
    """The module's detect() on image files: JPEGs and PNGs decoded in Node by sharp, other formats (or all,
    with ``same_pixels``) handed over as RGB pixels decoded by OpenCV. Returns the Node script's JSON."""
    import cv2

    from nanodet_ref.preprocess import read_image

    items = []
    for i, p in enumerate(paths):
        if p.suffix.lower() in FILE_SUFFIXES and not same_pixels:
            items.append({"id": p.name, "file": str(p)})
        else:
            rgb = np.ascontiguousarray(cv2.cvtColor(read_image(p), cv2.COLOR_BGR2RGB))
            rgb.tofile(work / f"img{i}.rgb")
            items.append({"id": p.name, "raw": str(work / f"img{i}.rgb"), "width": rgb.shape[1],
                          "height": rgb.shape[0]})
    (work / "detect.json").write_text(json.dumps(items))
    run_node("detect", module, model, ["--list", str(work / "detect.json"), "--out", str(work / "js.json")], backend)
    return json.loads((work / "js.json").read_text())


def compare_image_sets(reference: dict, got: dict, names) -> dict:
    """``compare_detections`` over the images ``names``: counts, worst box and score differences, failures."""
    per_image = {n: compare_detections(reference[n], got[n]) for n in names}
    bad = sorted(n for n, v in per_image.items() if not v["ok"])
    return {"images": len(per_image), "detections": sum(v["ref"] for v in per_image.values()),
            "box_max_px": max((v["box_max_px"] for v in per_image.values()), default=0.0),
            "score_max": max((v["score_max"] for v in per_image.values()), default=0.0),
            "failed_images": bad, "ok": not bad}


def recorded_validation_images(artifact: Path) -> list[str] | None:
    """The image file names the artifact's validation.json was measured on, where recorded."""
    try:
        files = json.loads((Path(artifact) / "validation.json").read_text()).get("image_files")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return files if isinstance(files, list) else None


def recorded_tfjs_ap(artifact: Path) -> float | None:
    """The tfjs stage's AP recorded by `validate` in validation.json, where present (for the report only)."""
    path = Path(artifact) / "validation.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    stages = data.get("stages") if isinstance(data, dict) else None
    entries = stages.items() if isinstance(stages, dict) else \
        ((s.get("name"), s) for s in stages) if isinstance(stages, list) else []
    for name, stage in entries:
        if isinstance(stage, dict) and str(name).startswith("tfjs"):
            coco = stage.get("coco") or stage.get("ap") or {}
            value = coco.get("ap") if isinstance(coco, dict) else coco
            if isinstance(value, (int, float)):
                return float(value)
    return None


def check_js_module(artifact: Path, cfg, images=None, annotations=None, limit: int | None = None,
                    backend: str = "wasm") -> dict:
    """Run both checks; returns a JSON-able summary with ``ok``."""
    from validation.coco_ap import CocoAnnotations
    from validation.dataset import resolve_images

    module, model = module_paths(artifact)
    image_set = resolve_images(images, annotations, limit)
    result = {"module": str(module), "model": str(model), "images": image_set.source, "backend": backend}
    with tempfile.TemporaryDirectory(prefix="nanodet-js-check-") as tmp:
        work = Path(tmp)
        result["decode_parity"], reference = decode_parity(cfg, module, model, image_set.paths, work, backend)
        js = js_detect(module, model, image_set.paths, work, backend)
        same = js_detect(module, model, image_set.paths, work, backend, same_pixels=True)
        pixels = decoder_pixels(image_set.paths, work)
    js_dets = {k: as_detections(v) for k, v in js["detections"].items()}
    same_dets = {k: as_detections(v) for k, v in same["detections"].items()}
    e2e = {"jpeg_decoder": jpeg_decoder_version(), "decoder_pixels": pixels, "detect_ms_mean": js.get("detect_ms_mean")}
    coco = CocoAnnotations(image_set.annotations, cfg.class_names) if image_set.annotations is not None else None
    if coco is not None and not coco.classes.none:
        e2e["ap_reference_pipeline"] = coco.evaluate(reference)["ap"]
        e2e["ap_js_module_same_pixels"] = coco.evaluate(same_dets)["ap"]
        e2e["ap_js_module_jpeg"] = coco.evaluate(js_dets)["ap"]
        e2e["ap_diff_same_pixels"] = abs(e2e["ap_js_module_same_pixels"] - e2e["ap_reference_pipeline"])
        e2e["ap_diff_jpeg"] = abs(e2e["ap_js_module_jpeg"] - e2e["ap_reference_pipeline"])
        e2e["ap_tolerance"] = {"same_pixels": AP_TOL_SAME_PIXELS, "jpeg": AP_TOL_JPEG}
        e2e["ok"] = e2e["ap_diff_same_pixels"] <= AP_TOL_SAME_PIXELS and e2e["ap_diff_jpeg"] <= AP_TOL_JPEG
    else:
        e2e["ok"] = None
        e2e["note"] = coco.classes.note(coco.path) if coco is not None else "no annotations: AP not measured"
    # detect() against the reference pipeline, image by image: on the same pixels always, from the files where
    # Node's decoder gave OpenCV's pixels (then the input tensors are the reference's bit for bit).
    names = [p.name for p in image_set.paths]
    e2e["detections_same_pixels"] = compare_image_sets(reference, same_dets, names)
    e2e["detections_files"] = compare_image_sets(reference, js_dets,
                                                 [n for n in names if n not in pixels["differing_images"]])
    detections_ok = e2e["detections_same_pixels"]["ok"] and e2e["detections_files"]["ok"]
    e2e["ok"] = detections_ok if e2e["ok"] is None else (e2e["ok"] and detections_ok)
    recorded = recorded_tfjs_ap(module.parent.parent)
    if recorded is not None:
        e2e["ap_tfjs_stage_recorded"] = recorded
        if "ap_js_module_jpeg" in e2e and recorded_validation_images(module.parent.parent) == names:
            # validate measured the tfjs stage on these very images: the module's AP from the files must equal it
            e2e["ap_diff_tfjs_stage_recorded"] = abs(e2e["ap_js_module_jpeg"] - recorded)
            if not pixels["differing_images"]:
                e2e["ok"] = e2e["ok"] and e2e["ap_diff_tfjs_stage_recorded"] <= AP_TOL_SAME_PIXELS
    result["end_to_end"] = e2e
    result["ok"] = bool(result["decode_parity"]["ok"] and e2e["ok"] is not False)
    return result


def jpeg_decoder_version() -> str:
    """The Node image decoder, e.g. ``sharp 0.35.5 (vips 8.18.7, mozjpeg 0826579, png 1.6.58)``."""
    modules = js_dir() / "node_modules"
    try:
        version = json.loads((modules / DECODER / "package.json").read_text())["version"]
    except (OSError, json.JSONDecodeError, KeyError):
        return f"{DECODER} (not installed)"
    libs = {}
    for path in sorted(modules.glob("@img/sharp-libvips-*/versions.json")):  # the prebuilt libvips installed
        try:
            libs = json.loads(path.read_text())
            break
        except (OSError, json.JSONDecodeError):
            continue
    parts = [f"{k} {libs[k]}" for k in ("vips", "mozjpeg", "png") if k in libs]
    return f"{DECODER} {version}" + (f" ({', '.join(parts)})" if parts else "")
