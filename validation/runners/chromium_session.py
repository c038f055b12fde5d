"""One headless Chromium with the runner page, driven from Python: the browser half of the browser runners.

A ``ChromiumSession`` starts the cross-origin isolated server (``isolated_server``: ``/js/`` is the toolkit's js
folder, models are added under ``/m/<k>/``, tensor bundles go through a temporary folder at ``/job/``) and
``js/browser/chromium.mjs`` (Debian's Chromium through playwright-core), and talks to it one JSON line per call.
Each ``BrowserPage`` is a page of its own (its own browser context) set up once for one runtime: tfjs wasm at a
thread count, tfjs webgl with its flags, or onnxruntime-web wasm; it holds the input images and any number of
models, so that a bench can interleave models and thread counts in one browser.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contracts.errors import UserError

from .isolated_server import serve
from .tensor_bundle import read_bundle, write_bundle

CHROMIUM_ENV = "NANODET_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
DRIVER = ("browser", "chromium.mjs")      # in contracts.js_assets.js_dir()
PAGE = "/js/browser/bench.html"
CALL_TIMEOUT = 600.0


def chromium_path() -> Path:
    """Debian's Chromium (``NANODET_CHROMIUM`` elsewhere)."""
    return Path(os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM)


def browser_missing() -> str | None:
    """Why the browser runs cannot run here (one line), or None where they can."""
    from contracts.js_assets import js_dir

    from .tfjs_node import node_executable

    chromium = chromium_path()
    if not (chromium.is_file() and os.access(chromium, os.X_OK)):
        return f"{chromium} absent: `make browser` installs Debian's chromium (as root)"
    try:
        node_executable()   # the driver (js/browser/chromium.mjs) runs in Node
    except UserError as exc:
        return str(exc)
    if not (js_dir() / "node_modules" / "playwright-core").is_dir():
        return "js/node_modules/playwright-core missing: run `make js`"
    return None


@dataclass
class PageSetup:
    """How one page runs its models: ``runtime`` tfjs | ort, ``backend`` wasm | webgl, ``threads`` (0: the
    runtime's default), ``lift_cap`` (tfjs wasm: lift tfjs 4.22's hardwareConcurrency / 2 thread cap, see
    js/browser/wasm_threads.mjs), ``flags`` (tfjs environment flags, e.g. WEBGL_FORCE_F16_TEXTURES), ``hosting``
    main | worker (the runtime on the page's main thread, or in a dedicated Web Worker: js/browser/worker.mjs),
    ``ort_proxy`` (onnxruntime-web on the main thread: its own worker proxy, ``env.wasm.proxy``)."""
    runtime: str = "tfjs"
    backend: str = "wasm"
    threads: int = 1
    lift_cap: bool = True
    flags: dict = field(default_factory=dict)
    hosting: str = "main"
    ort_proxy: bool = False

    def as_js(self) -> dict:
        return {"runtime": self.runtime, "backend": self.backend, "threads": self.threads, "liftCap": self.lift_cap,
                "flags": self.flags, "hosting": self.hosting, "ortProxy": self.ort_proxy}


class ChromiumSession:
    """The server and the browser, for a ``with`` block."""

    def __init__(self):
        missing = browser_missing()
        if missing:
            raise UserError(missing)
        self._tmp = None
        self._serving = None
        self._proc = None
        self._stderr = None
        self._pages = 0
        self.routes: dict[str, Path] = {}
        self.base = ""
        self.browser_version = None
        self.blocked: list[str] = []

    def __enter__(self) -> "ChromiumSession":
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)   # what did start (the server, the folder) stops again
            raise
        return self

    def _start(self) -> None:
        from contracts.js_assets import js_dir
        from .tfjs_node import node_executable

        self._tmp = tempfile.TemporaryDirectory(prefix="nanodet-browser-")
        self.job_dir = Path(self._tmp.name)
        self.routes.update({"/js/": js_dir(), "/job/": self.job_dir})
        self._serving = serve(self.routes, upload_prefix="/job/", upload_dir=self.job_dir)
        self.base = self._serving.__enter__()
        cmd = [node_executable(), str(js_dir().joinpath(*DRIVER)), "--chromium", str(chromium_path())]
        self._stderr = open(self.job_dir / "driver.err", "w")   # a file: a chatty driver never fills a pipe
        self._proc = subprocess.Popen(cmd, cwd=js_dir(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, text=True, bufsize=1)

    def __exit__(self, *exc):
        if self._proc is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
        if self._tmp is not None:
            self._tmp.cleanup()
        return False

    def command(self, cmd: dict, timeout: float = CALL_TIMEOUT) -> dict:
        """Send one command, wait for its answer; RuntimeError with the page's last console lines on failure."""
        if self._proc.poll() is not None:
            raise RuntimeError(f"Chromium driver exited ({self._proc.returncode}): {self._stderr_tail()}")
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            if not ready:
                self._proc.kill()
                raise RuntimeError(f"Chromium did not answer '{cmd.get('fn') or cmd['op']}' within {timeout:.0f} s")
            raise RuntimeError(f"Chromium driver exited: {self._stderr_tail()}")
        answer = json.loads(line)
        self.blocked = answer.get("blocked") or []
        if not answer.get("ok"):
            logs = "; ".join(answer.get("logs") or [])[-600:]
            raise RuntimeError(f"Chromium: {answer.get('error')}" + (f" (page console: {logs})" if logs else ""))
        return answer

    def _stderr_tail(self) -> str:
        try:
            self._proc.kill()
            self._proc.wait()
            lines = [l for l in (self.job_dir / "driver.err").read_text().splitlines() if l.strip()]
        except OSError:
            lines = []
        return lines[-1][:300] if lines else "no message"

    def page(self, setup: PageSetup) -> "BrowserPage":
        """A new page, set up for ``setup`` (the facts it got are its ``facts``)."""
        self._pages += 1
        name = f"p{self._pages}"
        answer = self.command({"op": "open", "page": name, "url": self.base + PAGE})
        self.browser_version = answer.get("version")
        page = BrowserPage(self, name)
        page.facts = page.call("setup", setup.as_js())
        page.facts["browser"] = f"Chromium {self.browser_version}"
        return page

    def serve_model(self, model_file: Path) -> str:
        """The URL of ``model_file`` (its folder served under a new prefix, weight shards beside it included)."""
        key = f"/m/{len(self.routes)}/"
        self.routes[key] = Path(model_file).resolve().parent
        return self.base + key + Path(model_file).name


class BrowserPage:
    """One page of a session: ``load_inputs``, ``load_model``, ``run``."""

    def __init__(self, session: ChromiumSession, name: str):
        self.session, self.name = session, name
        self.facts: dict = {}
        self.models: dict[str, dict] = {}

    def call(self, fn: str, *args, timeout: float = CALL_TIMEOUT):
        return self.session.command({"op": "call", "page": self.name, "fn": fn, "args": list(args)},
                                    timeout)["value"]

    def close(self) -> None:
        self.session.command({"op": "close", "page": self.name})

    def load_inputs(self, feeds: list[dict[str, np.ndarray]], key: str = "images") -> None:
        """A set of images for the page, named ``key``: one feed dict (input name -> [1, ...] array) per
        inference (models of other input layouts or names need sets of their own)."""
        name = f"in-{self.name}-{key}.ndtb"
        write_bundle(self.session.job_dir / name, feeds)
        self.call("loadInputs", key, f"{self.session.base}/job/{name}")
        (self.session.job_dir / name).unlink()

    def load_model(self, key: str, model_file: Path) -> dict:
        """Load a model.json (tfjs) or .onnx (ort) into the page as ``key``; returns load_ms, inputs, outputs."""
        info = self.call("loadModel", key, self.session.serve_model(model_file))
        self.models[key] = info
        return info

    def run(self, key: str, outputs: list[str] | None = None, warmup: int = 1, count: int | None = None,
            fetch: bool = False, inputs: str = "images") -> tuple[list[dict[str, np.ndarray]] | None, dict]:
        """Run model ``key`` on the first ``count`` images (all: None) of the set ``inputs`` after ``warmup``
        untimed runs of the first; returns (per image {output name: array} where ``fetch``, else None; timings)."""
        upload = f"out-{self.name}-{time.monotonic_ns()}.ndtb" if fetch else None
        timing = self.call("run", key, {"inputs": inputs, "outputs": outputs, "warmup": warmup, "count": count,
                                        "upload": f"{self.session.base}/job/{upload}" if upload else None})
        if not fetch:
            return None, timing
        path = self.session.job_dir / upload
        results, _ = read_bundle(path)
        path.unlink()
        return results, timing
