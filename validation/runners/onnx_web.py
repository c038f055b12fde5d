"""Run ONNX models with onnxruntime-web (wasm): in Node (``js/run_onnx_web.mjs``) or in headless Chromium
(``chromium_session``), the runtime a JS user would pick instead of TFJS.

``OrtWebRunner`` has the one runner interface (``base.Runner``); ``meta`` has the timings and the threads
onnxruntime-web settled on (it falls back to 1 where a page is not cross-origin isolated).
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.js_assets import install_hint, js_dir

from .base import stack_items
from .chromium_session import ChromiumSession, PageSetup
from .tensor_bundle import read_bundle, write_bundle
from .tfjs_chromium import MODEL_KEY, page_meta

SCRIPT = "run_onnx_web.mjs"   # in contracts.js_assets.js_dir()
WHERE = ("node", "chromium")


def check_package() -> None:
    """UserError where the onnxruntime-web npm package is not installed."""
    if not (js_dir() / "node_modules" / "onnxruntime-web").is_dir():
        raise UserError(f"{js_dir() / 'node_modules'}: onnxruntime-web missing: {install_hint()}")


class OrtWebRunner:
    """The toolkit signature over an ONNX model run by onnxruntime-web in Node or Chromium, at ``threads``."""

    def __init__(self, onnx_path: Path, io_spec: IoSpec, where: str = "node", threads: int = 1,
                 name: str = "onnxruntime-web", warmup: int = 0):
        if where not in WHERE:
            raise UserError(f"onnxruntime-web runs in {' or '.join(WHERE)}, not '{where}'")
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise UserError(f"{self.onnx_path}: ONNX model not found")
        check_package()
        self.io, self.where, self.threads, self.name, self.warmup = io_spec, where, threads, name, warmup
        self.meta: dict = {}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = self.io.prepare_input(batch)
        feeds = [{self.io.input_name: x[i:i + 1]} for i in range(len(x))]
        results = self._run_chromium(feeds) if self.where == "chromium" else self._run_node(feeds)
        return stack_items([self.io.collect(r, str(self.onnx_path)) for r in results])

    def _run_node(self, feeds: list[dict]) -> list[dict]:
        from .tfjs_node import node_executable

        with tempfile.TemporaryDirectory(prefix="ort-web-") as tmp:
            src, dst = Path(tmp) / "in.ndtb", Path(tmp) / "out.ndtb"
            write_bundle(src, feeds)
            cmd = [node_executable(), str(js_dir() / SCRIPT), "--model", str(self.onnx_path.resolve()),
                   "--input", str(src), "--output", str(dst), "--threads", str(self.threads),
                   "--warmup", str(self.warmup), "--outputs", ",".join(self.io.artifact_outputs())]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=js_dir())
            if proc.returncode != 0 or not dst.is_file():
                lines = [l for l in proc.stderr.splitlines() if l.strip()]
                raise RuntimeError(f"onnxruntime-web in Node failed on {self.onnx_path}: "
                                   f"{lines[-1] if lines else f'exit code {proc.returncode}'}")
            results, self.meta = read_bundle(dst)
        self.meta["runtime_host"] = "node"
        return results

    def _run_chromium(self, feeds: list[dict]) -> list[dict]:
        with ChromiumSession() as session:
            page = session.page(PageSetup(runtime="ort", threads=self.threads))
            page.load_inputs(feeds)
            load = page.load_model(MODEL_KEY, self.onnx_path)
            results, timing = page.run(MODEL_KEY, self.io.artifact_outputs(), warmup=self.warmup, fetch=True)
        self.meta = {**page_meta(page.facts, load, timing), "runtime_host": "chromium",
                     "blocked_requests": list(session.blocked)}
        return results
