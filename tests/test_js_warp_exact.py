"""The JS module's preprocessing (js/nanodet.mjs + js/nanodet_warp.mjs) gives the Python reference's input tensor
bit for bit from the same decoded pixels: cv2.warpPerspective's bilinear warp (OpenCV 5's float32 kernel as
dispatched on this CPU), BGR, float32 (v - mean) / std; letterbox (m-416) and stretch (plus-m-416), on the 40
shared images and on photos of other sizes and aspect ratios made here from them.

The pixels are decoded once, by OpenCV, and handed to Node raw, so no JPEG decoder is compared. OpenCV's kernel
differs per CPU (fused multiply-adds with AVX2, none on SSE4.1-only CPUs: see nanodet_warp.mjs); the module's
`fused` option picks which one it reproduces, and both are checked against OpenCV running that path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contracts.paths import PROJECT_ROOT
from converters.js_module import write_js_module
from nanodet_ref.config import load_config
from validation import js_module_check as check

JS_DIR = PROJECT_ROOT / "js"
CPU_AVX2 = 13  # cv::CPU_AVX2: OpenCV runs its AVX2 warp kernel (fused multiply-adds) where the CPU has it
SSE_ONLY = {"OPENCV_CPU_DISABLE": "AVX512F,AVX2,FMA3,AVX"}  # makes OpenCV dispatch its SSE4.1 kernel


def node_ready():
    import shutil

    if shutil.which("node") is None or not (JS_DIR / "node_modules" / check.DECODER).is_dir():
        pytest.skip("node or js/node_modules missing (run `make js`)")


def render(folder: Path, model: str, layout: str = "NCHW") -> Path:
    from contracts.signature import output_names

    cfg = load_config(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text("{}")
    spec = {"input": {"name": "input", "layout": layout}, "outputs": {n: n for n in output_names(cfg.strides)}}
    return write_js_module(folder, cfg, spec)


def other_photos(shared: Path, folder: Path) -> list[Path]:
    """Photos of sizes and aspect ratios the shared set lacks, cut and resized from it (PNG: lossless)."""
    import cv2

    images = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))
    a, b, c = (cv2.imread(str(images[i])) for i in (0, 7, 23))
    made = {
        "portrait-427x640.png": cv2.resize(a, (427, 640), interpolation=cv2.INTER_AREA),
        "wide-1920x1080.png": cv2.resize(b, (1920, 1080), interpolation=cv2.INTER_CUBIC),
        "tall-300x900.png": cv2.resize(c[:, : c.shape[1] // 3], (300, 900), interpolation=cv2.INTER_LINEAR),
        "tiny-97x131.png": cv2.resize(a[50:300, 100:280], (97, 131), interpolation=cv2.INTER_AREA),
        "strip-2001x37.png": cv2.resize(b[200:260], (2001, 37), interpolation=cv2.INTER_LINEAR),
        "odd-417x416.png": cv2.resize(c, (417, 416), interpolation=cv2.INTER_LINEAR),
        "pixel-1x1.png": a[100:101, 100:101],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in made.items():
        assert cv2.imwrite(str(folder / name), img)
    return [folder / name for name in made]


def js_tensors(work: Path, module: Path, paths: list[Path], fused: bool = True) -> dict:
    """{image name: (float32 tensor as Node's module.preprocess wrote it, the warp matrix it used)}."""
    import cv2

    from nanodet_ref.preprocess import read_image

    work.mkdir(parents=True, exist_ok=True)
    items = []
    for i, p in enumerate(paths):
        rgb = np.ascontiguousarray(cv2.cvtColor(read_image(p), cv2.COLOR_BGR2RGB))
        rgb.tofile(work / f"{i}.rgb")
        items.append({"raw": str(work / f"{i}.rgb"), "width": rgb.shape[1], "height": rgb.shape[0],
                      "out": str(work / f"{i}.f32"), "fused": fused})
    (work / "list.json").write_text(json.dumps(items))
    check.run_node("preprocess", module, None, ["--list", str(work / "list.json")])
    return {p.name: (np.fromfile(work / f"{i}.f32", np.float32),
                     np.array(json.loads((work / f"{i}.f32.json").read_text())["warp"]).reshape(3, 3))
            for i, p in enumerate(paths)}


def reference_in_subprocess(paths: list[Path], model: str, out: Path, env: dict) -> dict:
    """The reference tensors computed by a Python process started with ``env`` added (OpenCV reads
    OPENCV_CPU_DISABLE once, at import)."""
    code = ("import sys, numpy as np; from nanodet_ref.config import load_config; "
            "from nanodet_ref.preprocess import preprocess_file; cfg = load_config(sys.argv[1]); "
            "[np.save(f'{sys.argv[2]}/{i}.npy', preprocess_file(p, cfg)[0]) for i, p in enumerate(sys.argv[3:])]")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", code, model, str(out), *map(str, paths)], cwd=PROJECT_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {p.name: np.load(out / f"{i}.npy") for i, p in enumerate(paths)}


def as_nchw(flat: np.ndarray, cfg, layout: str) -> np.ndarray:
    w, h = cfg.input_size
    return flat.reshape(1, 3, h, w) if layout == "NCHW" else flat.reshape(1, h, w, 3).transpose(0, 3, 1, 2)


def mismatches(got: np.ndarray, ref: np.ndarray) -> int:
    """Values whose float32 bits differ (so -0.0 vs 0.0 or a NaN would count too)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype == np.float32
    return int((np.ascontiguousarray(got).view(np.uint32) != np.ascontiguousarray(ref).view(np.uint32)).sum())


@pytest.fixture(scope="module")
def image_sets(shared, tmp_path_factory):
    shared_images = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))
    assert len(shared_images) == 40
    return shared_images, other_photos(shared, tmp_path_factory.mktemp("photos"))


@pytest.mark.slow
@pytest.mark.parametrize("model, layout", [("m-416", "NCHW"), ("plus-m-416", "NCHW"), ("plus-m-416", "NHWC")])
def test_js_input_tensor_is_the_reference_bit_for_bit(tmp_path, image_sets, model, layout):
    import cv2

    from nanodet_ref.preprocess import preprocess_file

    node_ready()
    cfg = load_config(model)
    assert cfg.keep_ratio is (model == "m-416")  # letterbox for legacy, stretch for NanoDet-Plus
    paths = image_sets[0] + image_sets[1] if layout == "NCHW" else image_sets[1]
    got = js_tensors(tmp_path / "js", render(tmp_path / "module", model, layout), paths,
                     fused=bool(cv2.checkHardwareSupport(CPU_AVX2)))
    bad = {}
    for p in paths:
        ref, warp, _ = preprocess_file(p, cfg)
        tensor, js_warp = got[p.name]
        assert np.array_equal(js_warp, warp), (p.name, js_warp, warp)  # the matrix that maps boxes back too
        if n := mismatches(as_nchw(tensor, cfg, layout), ref):
            bad[p.name] = n
    assert bad == {}, f"{model}: float32 values that differ from the reference, per image: {bad}"


@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False])
def test_js_warp_reproduces_each_opencv_cpu_path(tmp_path, image_sets, fused):
    """OpenCV with its AVX2 kernel and with its SSE4.1 kernel (forced by OPENCV_CPU_DISABLE in a child process)
    give different tensors on the shared set; `fused` true/false reproduces each. The AVX2 half skips on a
    CPU without AVX2."""
    import cv2

    node_ready()
    if fused and not cv2.checkHardwareSupport(CPU_AVX2):
        pytest.skip("this CPU has no AVX2: OpenCV cannot run its fused kernel here")
    paths = image_sets[0] + image_sets[1]
    module = render(tmp_path / "module", "m-416")
    got = js_tensors(tmp_path / "js", module, paths, fused=fused)
    ref = reference_in_subprocess(paths, "m-416", tmp_path / "ref", {} if fused else SSE_ONLY)
    bad = {p.name: n for p in paths if (n := mismatches(as_nchw(got[p.name][0], load_config("m-416"), "NCHW"),
                                                        ref[p.name]))}
    assert bad == {}, bad
    other = js_tensors(tmp_path / "js-other", module, image_sets[0], fused=not fused)
    differ = [p.name for p in image_sets[0] if mismatches(as_nchw(other[p.name][0], load_config("m-416"), "NCHW"),
                                                           ref[p.name])]
    assert differ, "the two OpenCV CPU paths should differ somewhere on the shared set (else `fused` is moot)"


@pytest.mark.slow
def test_js_warp_is_cv2_warp_perspective_for_any_matrix_and_size(tmp_path):
    """The warp alone against cv2.warpPerspective on random images, perspective matrices and output sizes: row
    tails (widths not a multiple of 16, computed by OpenCV's scalar code), borders, 1-pixel images."""
    import cv2

    node_ready()
    module = render(tmp_path / "module", "m-416")
    fused = bool(cv2.checkHardwareSupport(CPU_AVX2))
    rng = np.random.default_rng(15)
    items, refs = [], []
    for i in range(150):
        w, h = (int(v) for v in rng.integers(1, 200, 2))
        bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        m = np.eye(3) + rng.normal(0, 0.2, (3, 3)) * [[1, 1, 30], [1, 1, 30], [0.002, 0.002, 0.1]]
        m[:2, :2] *= rng.uniform(0.3, 3)
        size = (int(rng.integers(1, 120)), int(rng.integers(1, 120)))
        np.ascontiguousarray(bgr[..., ::-1]).tofile(tmp_path / f"{i}.rgb")
        items.append({"raw": str(tmp_path / f"{i}.rgb"), "width": w, "height": h, "matrix": m.ravel().tolist(),
                      "dstWidth": size[0], "dstHeight": size[1], "out": str(tmp_path / f"{i}.out"), "fused": fused})
        refs.append(cv2.warpPerspective(bgr, m, dsize=size, borderValue=(0, 0, 0))[..., ::-1])
    (tmp_path / "list.json").write_text(json.dumps(items))
    check.run_node("warp", module, None, ["--list", str(tmp_path / "list.json")])
    bad = [i for i, ref in enumerate(refs)
           if not np.array_equal(np.fromfile(items[i]["out"], np.uint8).reshape(ref.shape), ref)]
    assert bad == [], [(items[i]["dstWidth"], items[i]["dstHeight"]) for i in bad]
    assert sum(it["dstWidth"] % 16 != 0 for it in items) > 100   # most rows end in a scalar tail


def float32_of(x) -> float:
    """A rational rounded once to the nearest float32 (ties to even), exactly."""
    from fractions import Fraction

    lo = float(np.float32(float(x)))           # within an ulp or two of x: step to the two float32s around x
    while Fraction(lo) > x:
        lo = float(np.nextafter(np.float32(lo), np.float32(-np.inf)))
    while Fraction(float(np.nextafter(np.float32(lo), np.float32(np.inf)))) <= x:
        lo = float(np.nextafter(np.float32(lo), np.float32(np.inf)))
    hi = float(np.nextafter(np.float32(lo), np.float32(np.inf)))
    below, above = x - Fraction(lo), Fraction(hi) - x
    if below != above:
        return lo if below < above else hi
    return lo if int(np.float32(lo).view(np.uint32)) % 2 == 0 else hi


@pytest.mark.slow
def test_fmaf_rounds_once(tmp_path):
    """nanodet_warp.mjs's fmaf(a, b, c) is a*b + c rounded once to float32 (what AVX2's vfmadd gives), also where
    rounding the double sum to float32 would round twice: the double sum lands on a float32 tie."""
    from fractions import Fraction

    node_ready()
    e = 2.0 ** -23
    crafted = [  # a*b + c = 1 + 2^-23 + 2^-24 - 2^-70: just below the tie the double sum rounds to
        (2.0 ** -12 * (1 + e), 2.0 ** -12 * (1 - e), 1 + e),
        (-(2.0 ** -12) * (1 + e), 2.0 ** -12 * (1 - e), -(1 + e)),
        (2.0 ** -12 * (1 + e), -(2.0 ** -12) * (1 - e), 1 + 3 * e),   # just above a tie
    ]
    rng = np.random.default_rng(3)
    values = rng.standard_normal((3000, 3)).astype(np.float32) * np.float32([1, 255, 255])
    cases = crafted + [tuple(float(v) for v in row) for row in values]
    script = ("import fs from 'node:fs'; import { fmaf } from " + json.dumps((JS_DIR / "nanodet_warp.mjs").as_uri())
              + "; const c = JSON.parse(fs.readFileSync(0, 'utf8'));"
              + " process.stdout.write(JSON.stringify(c.map(([a, b, x]) => fmaf(a, b, x))));")
    proc = subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(cases), text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = [float32_of(Fraction(a) * Fraction(b) + Fraction(c)) for a, b, c in cases]
    assert got[:3] == want[:3] == [1 + e, -(1 + e), 1 + 3 * e]
    assert got == want
    assert [float(np.float32(a * b + c)) for a, b, c in crafted] != want[:3]   # rounding twice would miss them
