"""Run TFJS graph models in headless Chromium (``chromium_session``): the browser a user ships to, wasm or WebGL.

``TfjsChromiumRunner`` puts the toolkit signature over one model run in one page (one browser per ``run``), like
``tfjs_node.TfjsNodeRunner`` does in Node: the feeds are the io spec's, the outputs are collected through it, and
``meta`` has the page's timings and what the page got (backend, threads as measured, cross-origin isolation,
the WebGL renderer and flags, and any request to another host, which the browser refused: ``blocked_requests``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.errors import UserError
from contracts.io_spec import IoSpec

from .base import stack_items
from .chromium_session import ChromiumSession, PageSetup

MODEL_KEY = "model"


def page_meta(facts: dict, load: dict, timing: dict) -> dict:
    """The runner meta of one model in one page: the page's facts, the model's load time, the run's timings."""
    return {**facts, "load_ms": load["load_ms"], "threads": load.get("threads", facts.get("threads")),
            "warmup_ms": timing["warmup_ms"], "infer_ms": timing["infer_ms"], "execute_ms": timing["execute_ms"]}


class TfjsChromiumRunner:
    """The toolkit signature over a TFJS graph model run in headless Chromium, set up as ``setup`` says."""

    def __init__(self, model_dir: Path, io_spec: IoSpec, setup: PageSetup | None = None,
                 name: str = "tfjs_chromium", warmup: int = 0):
        self.model_json = Path(model_dir) / "model.json" if Path(model_dir).is_dir() else Path(model_dir)
        if not self.model_json.is_file():
            raise UserError(f"{self.model_json}: TFJS model.json not found")
        self.io = io_spec
        self.setup = setup or PageSetup()
        self.name = name
        self.warmup = warmup
        self.meta: dict = {}

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = self.io.prepare_input(batch)
        feeds = [{self.io.input_name: x[i:i + 1]} for i in range(len(x))]
        with ChromiumSession() as session:
            page = session.page(self.setup)
            page.load_inputs(feeds)
            load = page.load_model(MODEL_KEY, self.model_json)
            results, timing = page.run(MODEL_KEY, self.io.artifact_outputs(), warmup=self.warmup, fetch=True)
        self.meta = {**page_meta(page.facts, load, timing), "blocked_requests": list(session.blocked)}
        return stack_items([self.io.collect(r, str(self.model_json)) for r in results])
