"""Main thread or Web Worker: the same wasm runtimes hosted both ways in one headless Chromium, timed in
interleaved rounds (``python -m commands hosting-probe``; docs/benchmark.md, "Main thread or Web Worker").

Pages, at 1 thread and at all cores: tfjs wasm (our tf_nhwc float32 artifact and the peer) on the page's main
thread and in a dedicated Web Worker (js/browser/worker.mjs), onnxruntime-web on the main thread, in the worker and
on the main thread with its own worker proxy (``env.wasm.proxy``). Each page loads its models once and runs every
image once (AP), then ``rounds`` rounds run every model of every page ``per_round`` times, so that load from other
processes hits every row alike. This is the evidence behind ``chromium_rows.WASM_HOSTING``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.manifest import Manifest
from validation.artifacts import stage_io_spec
from validation.runners.chromium_session import ChromiumSession, PageSetup

from .chromium_rows import BrowserJob, PagePlan, first_pass, interleaved_rounds, load_page
from .data import BenchData
from .ort_web import ALTERNATIVE, thread_counts
from .progress import log
from .variants import TfjsTarget, peer_target, variant_target

OURS = "tf_nhwc float32"
HOSTINGS = ("main", "worker", "proxy")   # proxy: onnxruntime-web on the main thread with its own worker proxy


@dataclass
class HostedRow:
    label: str
    hosting: str
    threads_asked: int
    row: dict


def hosting_plans(ours: TfjsTarget, peer: TfjsTarget, sim: tuple, worker_first: bool) -> list[PagePlan]:
    """The pages: tfjs (ours + the peer) main and worker, onnxruntime-web main, worker and proxy, per thread count;
    ``worker_first`` puts the worker pages first in every round (to see any order effect)."""
    order = ("worker", "main") if worker_first else ("main", "worker")
    plans = []
    for threads in thread_counts():
        for hosting in order:
            jobs = [BrowserJob(t.label, t.model_json, t.io, t.artifact) for t in (ours, peer)]
            plans.append(PagePlan(PageSetup("tfjs", "wasm", threads, hosting=hosting), jobs))
        for hosting in order + ("proxy",):
            setup = PageSetup("ort", "wasm", threads, hosting="main" if hosting == "proxy" else hosting,
                              ort_proxy=hosting == "proxy")
            plans.append(PagePlan(setup, [BrowserJob(ALTERNATIVE, *sim)]))
    return plans


def measure_hosting(artifact: Path, cfg, data: BenchData, rounds: int, per_round: int,
                    worker_first: bool = False) -> tuple[list[HostedRow], str]:
    """(rows, browser version) for ``artifact`` (a converted tf_nhwc folder with its model.sim.onnx)."""
    ours = variant_target(OURS, artifact, cfg)
    sim_path = artifact / "model.sim.onnx"
    sim = (sim_path, stage_io_spec(Manifest.load(artifact), "onnx_sim", sim_path, cfg), artifact.name)
    plans = hosting_plans(ours, peer_target(), sim, worker_first)
    with ChromiumSession() as session:
        for plan in plans:
            s = plan.setup
            log(f"- {s.runtime} wasm {s.threads} thread(s), {hosting_of(s)}: load and first pass")
            load_page(session, plan, data)
            first_pass(plan, data, 1)
        log(f"- {rounds} interleaved rounds x {per_round} per model")
        interleaved_rounds(plans, rounds, per_round, 1)
        version = session.browser_version
    rows = [HostedRow(job.label, hosting_of(plan.setup), plan.setup.threads, job.row)
            for plan in plans for job in plan.jobs]
    return rows, f"Chromium {version}"


def hosting_of(setup: PageSetup) -> str:
    return "proxy" if setup.ort_proxy else setup.hosting


def render_hosting(rows: list[HostedRow]) -> list[str]:
    """Markdown: per model and thread count, the median ms of each hosting (threads as measured) and main / worker."""
    lines = ["| model | threads asked | " + " | ".join(f"{h} ms (threads)" for h in HOSTINGS)
             + " | main / worker | AP |", "|---|---:|" + "---:|" * (len(HOSTINGS) + 2)]
    keys = list(dict.fromkeys((r.label, r.threads_asked) for r in rows))
    for label, threads in keys:
        got = {r.hosting: r.row for r in rows if (r.label, r.threads_asked) == (label, threads)}
        cells = [f"{got[h]['median_ms']:.1f} ({got[h].get('threads')})" if h in got else "" for h in HOSTINGS]
        ratio = (f"{got['main']['median_ms'] / got['worker']['median_ms']:.2f}x"
                 if "main" in got and "worker" in got else "-")
        ap = next((r["ap"]["ap"] for r in got.values() if isinstance(r.get("ap"), dict)), None)
        lines.append(f"| {label} | {threads} | " + " | ".join(cells) + f" | {ratio} | "
                     + ("-" if ap is None else f"{ap:.3f}") + " |")
    return lines
