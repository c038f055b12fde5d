"""The JS detection module (js/nanodet.mjs rendered as tfjs/nanodet.mjs): rendering, and in Node its
preprocessing, decoding and end-to-end detections against the Python reference; no tensor leak over 500 calls."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from converters.js_module import MODULE_NAME, PLACEHOLDER, TEMPLATE, module_config, write_js_module
from nanodet_ref.config import load_config
from validation import js_module_check as check

JS_DIR = PROJECT_ROOT / "js"
SIGNATURE = ["cls_pred_stride_8", "cls_pred_stride_16", "cls_pred_stride_32",
             "dis_pred_stride_8", "dis_pred_stride_16", "dis_pred_stride_32"]


def identity_spec(layout="NCHW"):
    return {"input": {"name": "input", "layout": layout}, "outputs": {n: n for n in SIGNATURE}}


def rendered_config(path: Path) -> dict:
    text = path.read_text()
    m = re.search(r"export const config = (\{.*?\n\});", text, re.S)
    assert m, "no config object in the rendered module"
    return json.loads(re.sub(r",\n\}$", "\n}", m.group(1)))


def node_ready():
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / check.DECODER).is_dir():
        pytest.skip("node or js/node_modules missing (run `make js`)")


def render(tmp_path: Path, cfg, spec=None) -> Path:
    (tmp_path / "model.json").write_text("{}")
    return write_js_module(tmp_path, cfg, spec or identity_spec())


# ----------------------------------------------------------------------------------------------- rendering

def test_template_has_one_placeholder():
    assert TEMPLATE.read_text().count(PLACEHOLDER) == 1


def test_render_writes_the_model_constants(tmp_path):
    cfg = load_config("m-416")
    spec = {"input": {"name": "input_1:0", "layout": "NHWC"},
            "outputs": {**{n: f"Identity_{i}:0" for i, n in enumerate(SIGNATURE)},
                        "dis_pred_stride_8": {"name": "Identity_3:0", "transpose": [0, 2, 1]}}}
    path = render(tmp_path, cfg, spec)
    assert path == tmp_path / MODULE_NAME
    for name in ("nanodet_decode.mjs", "nanodet_warp.mjs"):   # the files nanodet.mjs imports, copied beside it
        assert (tmp_path / name).read_text() == (JS_DIR / name).read_text()
    got = rendered_config(path)
    assert got == module_config(cfg, spec)
    assert got["inputName"] == "input_1:0" and got["inputLayout"] == "NHWC"
    assert (got["inputWidth"], got["inputHeight"]) == (416, 416)
    assert got["mean"] == [103.53, 116.28, 123.675] and got["std"] == [57.375, 57.12, 58.395]
    assert got["strides"] == [8, 16, 32] and got["regMax"] == 7 and got["numClasses"] == 80
    assert (got["scoreThreshold"], got["nmsIou"], got["maxDetections"], got["nmsPre"]) == (0.05, 0.6, 100, 1000)
    assert got["classNames"][9] == "traffic_light" and len(got["classNames"]) == 80
    assert got["outputs"]["dis_pred_stride_8"] == {"name": "Identity_3:0", "transpose": [0, 2, 1]}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_render_g416_has_its_own_reg_max(tmp_path):
    got = rendered_config(render(tmp_path, load_config("g-416")))
    assert got["regMax"] == 10 and got["model"] == "g-416"


@pytest.mark.parametrize("spec, message", [
    ({"input": {"name": "input", "layout": "NCWH"}, "outputs": {n: n for n in SIGNATURE}}, "layout"),
    ({"input": {"name": "input"}, "outputs": {n: n for n in SIGNATURE[:5]}}, "dis_pred_stride_32"),
    ({"outputs": {}}, "io spec"),
])
def test_render_rejects_a_bad_io_spec(tmp_path, spec, message):
    with pytest.raises(UserError, match=message):
        render(tmp_path, load_config("m-416"), spec)
    assert not (tmp_path / MODULE_NAME).exists()


def test_render_needs_a_tfjs_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        write_js_module(tmp_path / "absent", load_config("m-416"), identity_spec())
    with pytest.raises(UserError, match="model.json"):
        write_js_module(tmp_path, load_config("m-416"), identity_spec())


# ----------------------------------------------------- pure-JS parts in Node (no converted model needed)

def run_script(*args):
    proc = subprocess.run(check.node_command() + list(map(str, args)), cwd=JS_DIR, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


# The module's preprocessing against the reference, bit for bit: tests/test_js_warp_exact.py.


@pytest.mark.slow
@pytest.mark.parametrize("model", ["m-416", "plus-m-416"])
def test_js_decode_matches_reference_on_pytorch_outputs(tmp_path, shared, model):
    """The module's decode() and nanodet_ref.decode on the same raw outputs (from the PyTorch reference); for
    NanoDet-Plus too (4 levels, priors at col * stride, no per-level cut)."""
    from contracts.signature import output_names
    from nanodet_ref.checkpoint import load_weights
    from nanodet_ref.decode import decode
    from nanodet_ref.model import build_model, run_model
    from nanodet_ref.preprocess import preprocess_file

    node_ready()
    cfg = load_config(model)
    module = render(tmp_path, cfg, {"input": {"name": "input", "layout": "NCHW"},
                                    "outputs": {n: n for n in output_names(cfg.strides)}})
    model = build_model(cfg)
    load_weights(model, cfg)
    images = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[:3]
    items, refs = [], {}
    for i, p in enumerate(images):
        x, warp, hw = preprocess_file(p, cfg)
        outs = run_model(model, x)
        files = {}
        for name, arr in outs.items():
            files[name] = str(tmp_path / f"{i}.{name}.f32")
            arr.astype(np.float32).tofile(files[name])
        refs[p.name] = decode(outs, cfg, warp=warp, image_hw=hw)
        items.append({"id": p.name, "outputs": files, "warp": warp.ravel().tolist(), "width": int(hw[1]),
                      "height": int(hw[0])})
        # the same outputs in input-tensor pixels (no warp back)
        refs[p.name + ":input"] = decode(outs, cfg)
        items.append({"id": p.name + ":input", "outputs": files, "warp": None, "width": None, "height": None})
    (tmp_path / "list.json").write_text(json.dumps(items))
    run_script("decode", "--module", module, "--list", tmp_path / "list.json", "--out", tmp_path / "out.json")
    got = json.loads((tmp_path / "out.json").read_text())["detections"]
    total = 0
    for key, ref in refs.items():
        cmp = check.compare_detections(ref, check.as_detections(got[key]))
        assert cmp["ok"], (key, cmp)
        assert cmp["box_max_px"] < 1e-3 and cmp["score_max"] == 0.0, (key, cmp)
        total += len(ref)
        assert all(d["className"] == cfg.class_names[d["label"]] for d in got[key])
    assert total > 50


@pytest.mark.slow
def test_node_decoder_gives_opencv_pixels(tmp_path, shared):
    """sharp, as the check script calls it, decodes like the reference's OpenCV: the 40 shared JPEGs (8 carry an
    ICC profile sharp would otherwise apply) and PNGs (grey, RGBA, 16-bit) bit for bit."""
    import cv2

    node_ready()
    images = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))
    bgr = cv2.imread(str(images[0]))
    rng = np.random.default_rng(0)
    made = {"grey.png": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), "grey.jpg": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
            "rgba.png": np.dstack([bgr, rng.integers(0, 256, bgr.shape[:2], dtype=np.uint8)]),
            "rgb16.png": bgr.astype(np.uint16) * 257 + rng.integers(0, 257, bgr.shape, dtype=np.uint16)}
    for name, img in made.items():
        assert cv2.imwrite(str(tmp_path / name), img)
    work = tmp_path / "work"
    work.mkdir()
    got = check.decoder_pixels(images + [tmp_path / n for n in made], work)
    assert got == {"images": len(images) + len(made), "max_abs_diff": 0, "differing_images": []}
    assert len(images) == 40


# --------------------------------------------------------------------- with our converted m-416 artifact

@pytest.mark.slow
def test_js_module_matches_reference_on_converted_model(converted_m416, shared, test_output):
    node_ready()
    cfg = load_config("m-416")
    result = check.check_js_module(converted_m416, cfg)
    (test_output / "js_module_check_m-416.json").write_text(json.dumps(result, indent=2))
    parity = result["decode_parity"]
    assert parity["images"] == 40 and parity["backend"] == "wasm"
    assert parity["ok"], parity
    assert parity["detections"] > 1000
    e2e = result["end_to_end"]
    assert e2e["ap_diff_same_pixels"] <= check.AP_TOL_SAME_PIXELS, e2e
    assert e2e["ap_diff_jpeg"] <= check.AP_TOL_JPEG, e2e
    assert e2e["decoder_pixels"]["images"] == 40 and e2e["decoder_pixels"]["max_abs_diff"] == 0, e2e
    # detect() from the JPEGs: the input tensors are the reference's bit for bit, so the detections are its own
    for key in ("detections_same_pixels", "detections_files"):
        assert e2e[key]["images"] == 40 and e2e[key]["ok"], e2e[key]
        assert e2e[key]["detections"] == parity["detections"] and e2e[key]["score_max"] == 0.0, e2e[key]
    assert e2e["ap_js_module_jpeg"] == e2e["ap_reference_pipeline"] == e2e["ap_tfjs_stage_recorded"], e2e
    assert e2e["ap_js_module_jpeg"] > 0.3, e2e  # the real checkpoint: ~0.33 on this set
    assert result["ok"]


MEMORY_CALLS = 500  # about 0.2-0.5 s per detect() on this machine kind (wasm, one thread)


@pytest.mark.slow
def test_detect_500_calls_leaves_no_tensors(converted_m416, shared, tmp_path, test_output):
    node_ready()
    module, model = check.module_paths(converted_m416)
    image = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[0]
    out = tmp_path / "memory.json"
    check.run_node("memory", module, model, ["--image", str(image), "--calls", str(MEMORY_CALLS), "--out", str(out)])
    mem = json.loads(out.read_text())
    (test_output / "js_module_memory_m-416.json").write_text(json.dumps(mem, indent=2))
    assert mem["calls"] == MEMORY_CALLS and mem["detectionsPerCall"] > 0
    assert mem["numTensorsAfter"] == mem["numTensorsBefore"], mem
