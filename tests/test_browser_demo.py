"""The static demo page (js/demo/) in headless Chromium: it loads our converted artifact, detects on a shared
image with the wasm backend, draws boxes (screenshot saved in test-output/), and its detections equal those of
the same JS module in Node on the same pixels. WebGL too, where the browser has it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from contracts.paths import PROJECT_ROOT
from validation import js_module_check as check
from validation.runners import isolated_server

JS_DIR = PROJECT_ROOT / "js"
CHROMIUM = Path(os.environ.get("NANODET_CHROMIUM", "/usr/bin/chromium"))
DRIVER = JS_DIR / "demo" / "run_in_chromium.mjs"
IMAGE = "000000005001.jpg"  # a crowded street scene: many people

pytestmark = pytest.mark.slow


def browser_ready():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} absent: run `make browser` (apt-get install chromium) to test the demo page")
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("node or js/node_modules/playwright-core missing (run `make js`)")


def serve(routes: dict[str, Path]):
    """The project root at /, after the given prefixes, by the toolkit's own server (what `make demo` serves:
    cross-origin isolated, nothing outside the routes)."""
    return isolated_server.serve({**routes, "/": PROJECT_ROOT})


def run_page(url: str, screenshot: Path) -> dict:
    proc = subprocess.run(["node", str(DRIVER), "--url", url, "--screenshot", str(screenshot),
                           "--chromium", str(CHROMIUM), "--timeout-ms", "240000"],
                          cwd=JS_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def artifact(converted_m416):
    """The session's m-416 artifact (tests/conftest.py: one conversion with audit and validation)."""
    return converted_m416


@pytest.fixture(scope="module")
def same_pixels(shared, tmp_path_factory):
    """The shared image as a PNG (lossless: the browser sees exactly OpenCV's decoded pixels) and the Node
    module's detections on those same pixels (RGB bytes)."""
    import cv2

    from nanodet_ref.preprocess import read_image

    tmp = tmp_path_factory.mktemp("demo")
    bgr = read_image(shared / "data" / "coco-val2017-40" / "images" / IMAGE)
    assert cv2.imwrite(str(tmp / "image.png"), bgr)
    np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).tofile(tmp / "image.rgb")
    return tmp, {"id": IMAGE, "raw": str(tmp / "image.rgb"), "width": bgr.shape[1], "height": bgr.shape[0]}


def node_detections(artifact: Path, item: dict, tmp: Path) -> list[dict]:
    module, model = check.module_paths(artifact)
    (tmp / "list.json").write_text(json.dumps([item]))
    check.run_node("detect", module, model, ["--list", str(tmp / "list.json"), "--out", str(tmp / "node.json")])
    return json.loads((tmp / "node.json").read_text())["detections"][item["id"]]


def demo_url(base: str, backend: str) -> str:
    return f"{base}/js/demo/index.html?model=/__model/model.json&image=/__images/image.png&backend={backend}"


def compare(page: list[dict], node: list[dict], box_tol: float, score_tol: float, top: int | None = None):
    page, node = page[:top], node[:top]
    assert [d["label"] for d in page] == [d["label"] for d in node]
    box = max(np.abs(np.subtract(p["box"], n["box"])).max() for p, n in zip(page, node))
    score = max(abs(p["score"] - n["score"]) for p, n in zip(page, node))
    assert box <= box_tol and score <= score_tol, (box, score)
    return box, score


def test_demo_page_wasm_equals_node_module(artifact, same_pixels, test_output):
    browser_ready()
    tmp, item = same_pixels
    node = node_detections(artifact, item, tmp)
    assert len(node) > 10
    shot = test_output / "browser_demo_m-416_wasm.png"
    shot.unlink(missing_ok=True)
    with serve({"/__model/": check.module_paths(artifact)[0].parent, "/__images/": tmp}) as base:
        state = run_page(demo_url(base, "wasm"), shot)
    assert state["state"] == "done", state
    assert state["backend"] == "wasm"
    assert state["canvas"] == [item["width"], item["height"]]
    assert "drawn" in state["status"] and not state["status"].startswith("0 ")
    # Same pixels, same JS, same wasm kernels: the same detections (identical in practice).
    assert len(state["detections"]) == len(node)
    compare(state["detections"], node, box_tol=1e-3, score_tol=1e-5)
    assert shot.is_file() and shot.stat().st_size > 50_000


def test_demo_page_webgl_where_available(artifact, same_pixels, test_output):
    browser_ready()
    tmp, item = same_pixels
    node = node_detections(artifact, item, tmp)
    shot = test_output / "browser_demo_m-416_webgl.png"
    with serve({"/__model/": check.module_paths(artifact)[0].parent, "/__images/": tmp}) as base:
        state = run_page(demo_url(base, "webgl"), shot)
    if state["state"] == "error" and "backend 'webgl' unavailable" in str(state.get("error")):
        pytest.skip("this Chromium has no WebGL")
    assert state["state"] == "done", state
    assert state["backend"] == "webgl"
    # WebGL computes in float32 on the GPU (here: SwiftShader): the best detections agree closely.
    compare(state["detections"], node, box_tol=0.5, score_tol=1e-3, top=10)
