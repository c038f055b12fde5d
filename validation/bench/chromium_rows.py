"""The bench's Chromium rows: every TFJS model the Node rows measured (our variants and the peer) and our
model.sim.onnx under onnxruntime-web, in headless Chromium (``validation.runners.chromium_session``), served
cross-origin isolated so that threads are allowed.

One page per runtime setup, all in one browser: tfjs wasm at 1 thread and at all cores (the cap tfjs 4.22 puts on
threads lifted, see js/browser/wasm_threads.mjs), onnxruntime-web wasm at the same counts, and tfjs WebGL through
SwiftShader (a software renderer: its timings are not GPU timings). Every wasm runtime, ours, the peer's and
onnxruntime-web's alike, is hosted in a dedicated Web Worker (``WASM_HOSTING``; js/browser/worker.mjs): on a page's
main thread WebAssembly threads cannot block and spin instead, which made tfjs 1.6x to 2.1x slower at 2 threads
(docs/benchmark.md, "Threads in tfjs-backend-wasm 4.22"). WebGL stays on the main thread. Each row says its
``hosting``. Each page loads its models once; a first pass runs every image on the wasm pages (their AP; the
WebGL page times ``webgl_images`` images only: SwiftShader takes about a second per inference, so WebGL rows have
no AP), then ``rounds`` interleaved rounds run every model of every
page once each (``per_round`` images on wasm, ``webgl_images`` on WebGL), so that load from other processes hits all
rows alike, the peer always at the same thread count as ours. The medians are over the rounds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from contracts.io_spec import IoSpec
from validation.runners.base import stack_items
from validation.runners.chromium_session import BrowserPage, ChromiumSession, PageSetup

from .data import BenchData
from .measurement import median
from .ort_web import ALTERNATIVE, OrtWebTarget, thread_counts
from .progress import log
from .variants import PEER_LABEL, TfjsTarget

SOFTWARE_RENDERER = "SwiftShader (software renderer: not GPU timings)"
WASM_HOSTING = "worker"   # where every wasm runtime runs: main | worker (the measured faster, see the docstring)
WEBGL_HOSTING = "main"


@dataclass
class BrowserJob:
    """One model of one page: its row, and what the page needs to run it."""
    label: str
    model_file: Path
    io: IoSpec
    artifact: str
    input_set: str = ""
    row: dict = field(default_factory=dict)
    times: list = field(default_factory=list)


@dataclass
class PagePlan:
    setup: PageSetup
    jobs: list[BrowserJob]
    page: BrowserPage | None = None

    @property
    def backend(self) -> str:
        return self.setup.backend


def plan_pages(measured: dict) -> list[PagePlan]:
    """The pages and their models: tfjs wasm and onnxruntime-web wasm at each thread count, then tfjs WebGL."""
    tfjs = [t for t in measured.values() if isinstance(t, TfjsTarget)]
    ort = next((t for t in measured.values() if isinstance(t, OrtWebTarget)), None)
    plans = []
    for threads in thread_counts():
        if tfjs:
            plans.append(PagePlan(PageSetup("tfjs", "wasm", threads, hosting=WASM_HOSTING), tfjs_jobs(tfjs)))
        if ort is not None:
            plans.append(PagePlan(PageSetup("ort", "wasm", threads, hosting=WASM_HOSTING),
                                  [BrowserJob(ALTERNATIVE, ort.onnx_path, ort.io, ort.artifact)]))
    if tfjs:
        plans.append(PagePlan(PageSetup("tfjs", "webgl", 0, hosting=WEBGL_HOSTING), tfjs_jobs(tfjs)))
    return plans


def tfjs_jobs(targets: list[TfjsTarget]) -> list[BrowserJob]:
    return [BrowserJob(t.label, t.model_json, t.io, t.artifact) for t in targets]


def base_row(job: BrowserJob, setup: PageSetup) -> dict:
    row = {"label": job.label, "runtime": "chromium", "backend": setup.backend, "artifact": job.artifact,
           "requested_threads": setup.threads or None, "hosting": setup.hosting}
    if job.label == PEER_LABEL:
        row["peer"] = True
    if setup.runtime == "ort":
        row["alternative"] = ALTERNATIVE
    return row


def thread_facts(facts: dict, load: dict) -> dict:
    """What a row reports about its threads, as the page measured them."""
    request = facts.get("thread_request") or {}
    return {"threads": load.get("threads", facts.get("threads")), "hosting": facts.get("hosting"),
            "cross_origin_isolated": facts.get("cross_origin_isolated"),
            "cap_lifted": request.get("cap_lifted"), "wasm_binary": facts.get("wasm_binary")}


def load_page(session: ChromiumSession, plan: PagePlan, data: BenchData) -> None:
    """Open the page, give it the image sets its models need, load every model."""
    plan.page = session.page(plan.setup)
    sets: dict[str, str] = {}
    for job in plan.jobs:
        x = job.io.prepare_input(data.tensor)
        digest = hashlib.sha1(job.io.input_name.encode() + str(x.shape).encode() + x.tobytes()).hexdigest()
        if digest not in sets:
            sets[digest] = f"s{len(sets)}"
            plan.page.load_inputs([{job.io.input_name: x[i:i + 1]} for i in range(len(x))], sets[digest])
        job.input_set = sets[digest]
        job.row = base_row(job, plan.setup)
        load = plan.page.load_model(job.label, job.model_file)
        job.row.update(thread_facts(plan.page.facts, load), load_ms=load["load_ms"])
        if plan.backend == "webgl":
            job.row["renderer"] = plan.page.facts.get("renderer")


def first_pass(plan: PagePlan, data: BenchData, webgl_images: int) -> None:
    """wasm: every image (the AP); WebGL: ``webgl_images`` images, latency only. One warm-up inference first."""
    for job in plan.jobs:
        fetch = plan.backend == "wasm"
        count = None if fetch else webgl_images
        results, timing = plan.page.run(job.label, job.io.artifact_outputs(), warmup=1, count=count, fetch=fetch,
                                        inputs=job.input_set)
        job.row.update(first_ms=timing["warmup_ms"][0], median_ms=median(timing["infer_ms"]),
                       runs=len(timing["infer_ms"]), first_pass_median_ms=median(timing["infer_ms"]))
        if results is not None:
            job.row["ap"] = data.ap(stack_items([job.io.collect(r, str(job.model_file)) for r in results]))


def interleaved_rounds(plans: list[PagePlan], rounds: int, per_round: int, webgl_images: int) -> None:
    """Every model of every page once per round; the rows' medians over all rounds."""
    for _ in range(rounds):
        for plan in plans:
            for job in plan.jobs:
                count = per_round if plan.backend == "wasm" else webgl_images
                _, timing = plan.page.run(job.label, job.io.artifact_outputs(), warmup=0, count=count,
                                          inputs=job.input_set)
                job.times += timing["infer_ms"]
    for plan in plans:
        for job in plan.jobs:
            if job.times:
                job.row.update(median_ms=median(job.times), runs=len(job.times),
                               interleaved=f"{rounds} rounds x {len(job.times) // rounds}")


def measure_chromium(measured: dict, data: BenchData, rounds: int, per_round: int, webgl_images: int
                     ) -> tuple[list[dict], list[str], dict]:
    """(rows, failures, facts): the Chromium rows of the models in ``measured`` (the Node rows' TFJS targets and
    onnxruntime-web targets by label). A page that fails marks its rows with the error; the others still run."""
    plans = plan_pages(measured)
    failures: list[str] = []
    with ChromiumSession() as session:
        running = []
        for plan in plans:
            name = page_name(plan.setup)
            log(f"- Chromium {name}: {len(plan.jobs)} model(s)")
            try:
                load_page(session, plan, data)
                first_pass(plan, data, webgl_images)
                running.append(plan)
            except RuntimeError as exc:
                log(f"  error: {exc}")
                failures.append(f"Chromium {name}: {exc}")
                for job in plan.jobs:
                    job.row = {**base_row(job, plan.setup), **job.row, "error": str(exc).splitlines()[0][:200]}
        if rounds and running:
            log(f"- Chromium, interleaved ({rounds} rounds x {per_round} per model on wasm, {webgl_images} on WebGL)")
            try:
                interleaved_rounds(running, rounds, per_round, webgl_images)
            except RuntimeError as exc:
                log(f"  error: {exc} (medians stay those of the first pass)")
                failures.append(f"Chromium interleaved rounds: {exc}")
        facts = {"browser": f"Chromium {session.browser_version}", "blocked_requests": list(session.blocked)}
    return [job.row for plan in plans for job in plan.jobs], failures, facts


def page_name(setup: PageSetup) -> str:
    runtime = "onnxruntime-web" if setup.runtime == "ort" else "tfjs"
    if setup.backend == "webgl":
        return f"{runtime} webgl ({SOFTWARE_RENDERER}), {setup.hosting} thread"
    return f"{runtime} wasm, {setup.threads} thread{'s' if setup.threads != 1 else ''}, hosted: {setup.hosting}"
