"""Run TFJS graph models with TFJS itself: a Node process (js/run_graph_model.mjs, wasm or cpu backend).

``run_tfjs_graph`` is the low-level call (any feeds, outputs by TFJS names); ``TfjsNodeRunner`` puts the
toolkit signature on top of it through an io spec. One Node process handles the whole batch; tensors travel
as binary bundles (``tensor_bundle``) in a temporary folder.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.js_assets import install_hint, js_dir
from contracts.node_runtime import NODE_MINIMUM_TEXT, check_node_version

from .base import stack_items
from .tensor_bundle import read_bundle, write_bundle

SCRIPT = "run_graph_model.mjs"   # in contracts.js_assets.js_dir()
BACKENDS = ("wasm", "cpu")


def node_executable() -> str:
    given = os.environ.get("NANODET_NODE")
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise UserError(f"NANODET_NODE={given}: not an executable file (Node.js needed to run TFJS models)")
        return given
    node = shutil.which("node")
    if not node:
        raise UserError(f"node (Node.js >= {NODE_MINIMUM_TEXT}) not found on PATH: install Node.js to run TFJS models "
                        "(or set NANODET_NODE)")
    check_node_version(node, "to run TFJS models")
    return node


def _check_js_packages(backend: str) -> None:
    modules = js_dir() / "node_modules"
    if not (modules / "@tensorflow" / "tfjs-converter").is_dir() or not (modules / "@tensorflow" /
                                                                          f"tfjs-backend-{backend}").is_dir():
        raise UserError(f"{modules}: TFJS npm packages missing: {install_hint()}")


def check_environment(backend: str = "wasm") -> None:
    """UserError where Node or the TFJS npm packages are missing."""
    if backend not in BACKENDS:
        raise UserError(f"--tfjs-backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    node_executable()
    _check_js_packages(backend)


def run_tfjs_graph(model_json: Path, feeds: list[dict[str, np.ndarray]], output_names: list[str] | None = None,
                   backend: str = "wasm", warmup: int = 0, timeout: float | None = None,
                   return_meta: bool = False, profile: bool = False):
    """Run ``model_json`` on each feed dict (TFJS input name -> array, float32/int32) in one Node process.

    ``profile``: run each (non-warm-up) inference under tf.profile; meta["kernel_ms"] then lists, per
    inference, kernel name -> milliseconds (the infer_ms of such a run include the profiling overhead).

    Returns one dict per feed: TFJS output name -> array (``output_names`` or the model's own outputs).
    With ``return_meta`` returns (results, meta) where meta has backend, load_ms, warmup_ms, infer_ms.
    """
    model_json = Path(model_json)
    if model_json.is_dir():
        model_json = model_json / "model.json"
    if not model_json.is_file():
        raise UserError(f"{model_json}: TFJS model.json not found")
    if backend not in BACKENDS:
        raise UserError(f"--tfjs-backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    node = node_executable()
    _check_js_packages(backend)
    with tempfile.TemporaryDirectory(prefix="tfjs-run-") as tmp:
        src, dst = Path(tmp) / "in.ndtb", Path(tmp) / "out.ndtb"
        write_bundle(src, feeds)
        cmd = [node, str(js_dir() / SCRIPT), "--model", str(model_json.resolve()), "--input", str(src),
               "--output", str(dst), "--backend", backend, "--warmup", str(int(warmup))]
        if profile:
            cmd += ["--profile", "1"]
        if output_names:   # by file: a list of every tapped tensor (validation.localize) outgrows a command line
            (Path(tmp) / "outputs.json").write_text(json.dumps(list(output_names)))
            cmd += ["--outputs-file", str(Path(tmp) / "outputs.json")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"TFJS Node runner on {model_json} timed out after {timeout} s") from None
        if proc.returncode != 0 or not dst.is_file():
            lines = [l for l in (proc.stderr or "").strip().splitlines() if l.strip()]
            msg = lines[-1] if lines else f"exit code {proc.returncode}"
            msg = msg[len("error: "):] if msg.startswith("error: ") else msg
            if proc.returncode == 2:  # the runner's own one-line user errors (bad file, missing shard)
                raise UserError(msg)
            raise RuntimeError(f"TFJS Node runner failed on {model_json}: {msg}")
        results, meta = read_bundle(dst)
    return (results, meta) if return_meta else results


class TfjsNodeRunner:
    """The toolkit signature over a TFJS graph model run in Node."""

    def __init__(self, model_dir: Path, io_spec: IoSpec, backend: str = "wasm", name: str = "tfjs",
                 warmup: int = 0, profile: bool = False):
        """``warmup``: untimed inferences of the first image before the timed ones; ``profile``: kernel times
        per inference (``run_tfjs_graph``); both for the bench, whose timings come from ``meta``."""
        self.model_json = Path(model_dir) / "model.json" if Path(model_dir).is_dir() else Path(model_dir)
        if not self.model_json.is_file():
            raise UserError(f"{self.model_json}: TFJS model.json not found")
        self.io = io_spec
        self.backend = backend
        self.name = name
        self.warmup = warmup
        self.profile = profile
        self.meta: dict = {}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = self.io.prepare_input(batch)
        feeds = [{self.io.input_name: x[i:i + 1]} for i in range(len(x))]
        wanted = self.io.artifact_outputs()
        results, self.meta = run_tfjs_graph(self.model_json, feeds, wanted, self.backend, warmup=self.warmup,
                                            return_meta=True, profile=self.profile)
        return stack_items([self.io.collect(r, str(self.model_json)) for r in results])
