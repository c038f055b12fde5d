"""Localise stages of an artifact folder: for each, its ``first_divergence`` and a ``localization`` summary.

``localize_stages(job, names)`` works on the first few images of the validation batch (``IMAGES``):

- PyTorch: every module call on each image (``torch_taps``);
- onnx: ``model.onnx`` instrumented and run by onnxruntime, judged against PyTorch only;
- onnx_sim: ``model.sim.onnx`` the same way; where PyTorch has no counterpart, onnx's value where onnx agreed;
- saved_model: the instrumented ``model.sim.onnx`` through the artifact's backend (``tf_taps``), run by TF;
  unmapped tensors against onnx_sim where it agreed;
- tfjs: that instrumented SavedModel through the tfjs converter (``tfjs_taps``), run by TFJS in Node; unmapped
  tensors against the instrumented SavedModel, else onnx_sim, where they agreed. Quantised weights are not
  localised: every tensor differs by design, the stage is judged on AP.

For the two TF stages the instrumented copy is checked against the artifact itself: its final outputs against
the artifact's on the same images (``instrumented_vs_artifact``), and its op types against the artifact's
(``fusion``: where instrumenting changed what the engine fuses, it says so). Neither ever changes a verdict:
the artifact's own outputs decide PASS/FAIL. A localisation that fails is recorded (``error``) and the
validation goes on.
"""
from __future__ import annotations

import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import tf_taps, tfjs_taps
from .first_divergence import Reference, first_divergence, judge, summary, tolerance
from .graphs import TappedGraph
from .torch_taps import record_calls

IMAGES = 2                     # localisation runs on the first images of the batch
LOCALIZED = ("onnx", "onnx_sim", "saved_model", "tfjs")
SIM_GRAPH = "model.sim.onnx"
ONNX_GRAPH = "model.onnx"


@dataclass
class Job:
    """What a localisation needs to know about one artifact folder and its validation."""
    artifact_dir: Path
    manifest: dict
    model: object                        # the PyTorch reference (nn.Module)
    images: np.ndarray                   # [N, 3, H, W] NCHW, the validation batch
    atol: float
    rtol: float
    runners: dict = field(default_factory=dict)   # stage -> the validation's runner of the artifact itself
    tfjs_backend: str = "wasm"
    log: object = print


class _Session:
    """The values shared between the stages of one localisation (computed on first use)."""

    def __init__(self, job: Job, work: Path):
        self.job, self.work = job, work
        self.images = np.ascontiguousarray(job.images[:IMAGES], np.float32)
        self.calls = [record_calls(job.model, self.images[i:i + 1]) for i in range(len(self.images))]
        self.output_names = list(getattr(job.model, "output_names", []) or [])
        self._graphs: dict = {}
        self.saved_model: tuple | None = None     # (TfTaps, values per image by tensor)

    def graph(self, filename: str) -> TappedGraph:
        if filename not in self._graphs:
            self._graphs[filename] = TappedGraph.prepare(self.job.artifact_dir / filename, self.work, self.images,
                                                         self.calls, self.output_names)
        return self._graphs[filename]

    def backend(self) -> str:
        stage = (self.job.manifest.get("stages") or {}).get("saved_model") or {}
        return stage.get("backend") or (self.job.manifest.get("options") or {}).get("backend") or "onnx_tf"

    def quantize(self) -> str | None:
        stage = (self.job.manifest.get("stages") or {}).get("tfjs") or {}
        q = stage.get("quantize") or (self.job.manifest.get("options") or {}).get("quantize")
        return None if q in (None, "float32") else q


def localize_stages(job: Job, names: list[str]) -> dict[str, dict]:
    """{stage: {"first_divergence": dict or None, "localization": dict}} for each stage in ``names``."""
    names = [n for n in LOCALIZED if n in names]
    if not names:
        return {}
    out = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="localize-") as tmp:
        try:
            session = _Session(job, Path(tmp))
        except Exception as exc:
            return {n: _failed(exc, time.perf_counter() - t0) for n in names}
        for name in names:
            t1 = time.perf_counter()
            job.log(f"[localize] {name}: comparing every intermediate tensor on {len(session.images)} image(s) ...")
            try:
                out[name] = STAGES[name](session)
            except Exception as exc:
                out[name] = _failed(exc, 0.0)
            out[name]["seconds"] = round(time.perf_counter() - t1, 2)
            job.log(_log_line(name, out[name]))
    return out


def _failed(exc: Exception, seconds: float) -> dict:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return {"first_divergence": None, "localization": {"error": f"localisation failed: {last[:400]}"},
            "seconds": round(seconds, 2)}


def _log_line(name: str, result: dict) -> str:
    fd, loc = result["first_divergence"], result["localization"]
    if loc.get("error"):
        return f"[localize] {name}: {loc['error']}"
    if fd is None:
        return f"[localize] {name}: no tensor differs ({loc.get('summary', {}).get('tensors', 0)} compared)"
    return (f"[localize] {name}: first divergence at {fd['node']} ({fd['op_type']}), max |diff| "
            f"{fd['max_abs_diff']} > {fd['tolerance']:.3g}, inputs {fd['inputs_max_abs_diff']}")


def _result(graph: TappedGraph, stage_values: list, reference: Reference, session: _Session,
            missing: dict | None = None, engine: dict | None = None, notes: list | None = None,
            extra: dict | None = None) -> dict:
    job = session.job
    rows = judge(graph.info, stage_values, reference, job.atol, job.rtol, missing)
    fd = first_divergence(graph.info, rows)
    if fd is not None and engine:
        fd["engine_node"] = engine.get(fd["tensor"])
        for entry in fd["inputs"] + fd["chain"]:
            if engine.get(entry["tensor"]):
                entry["engine_node"] = engine[entry["tensor"]]
        together = fused_group(graph, engine, fd["tensor"])
        if together:
            fd["engine_fuses"] = together
    loc = {"graph": graph.path.name, "images": len(session.images), "summary": summary(rows),
           "notes": list(notes or []), "tensors": [_row(r) for r in rows]}
    if extra:
        loc.update(extra)
    return {"first_divergence": fd, "localization": loc}


def fused_group(graph: TappedGraph, engine: dict, tensor: str) -> list[str]:
    """The ONNX nodes the engine computes in the same node as ``tensor`` (a conv with the activation fused into
    it), in graph order; [] where that node computes ``tensor`` alone."""
    name = (engine.get(tensor) or "").split(" (")[0]
    nodes = [graph.info.producer[t].name for t in graph.info.order
             if name and (engine.get(t) or "").split(" (")[0] == name]
    return nodes if len(nodes) > 1 else []


def _row(r: dict) -> list:
    """A compact table row: tensor, op type, status, max |diff|, tolerance, reference, why (not reached)."""
    return [r["tensor"], r["op_type"], r["status"], r.get("max_abs_diff"), r.get("tolerance"), r.get("reference"),
            r.get("why")]


def _by_tensor(values: list[dict], taps: dict) -> list[dict]:
    """tap name -> tensor name, per image."""
    return [{taps[k]: v for k, v in img.items() if k in taps} for img in values]


# -- the stages -------------------------------------------------------------------------------------------------

def _onnx(session: _Session) -> dict:
    g = session.graph(ONNX_GRAPH)
    notes = ["tensors without a PyTorch counterpart are not judged at this stage (no earlier stage)"]
    return _result(g, g.onnxruntime, g.reference, session, notes=notes)


def _onnx_sim(session: _Session) -> dict:
    g = session.graph(SIM_GRAPH)
    earlier = []
    if (session.job.artifact_dir / ONNX_GRAPH).is_file():
        earlier.append(("onnx", session.graph(ONNX_GRAPH).onnxruntime))
    ref = Reference(g.reference.pytorch, g.reference.labels, earlier)
    return _result(g, g.onnxruntime, ref, session)


def _saved_model_taps(session: _Session):
    if session.saved_model is None:
        g = session.graph(SIM_GRAPH)
        sm_dir = session.work / "saved_model"
        backend = session.backend()
        tf_taps.convert(backend, g.taps_path, sm_dir, session.job.log)
        taps = tf_taps.read_taps(backend, sm_dir, g.tap_shapes(), [1] + list(session.images.shape[1:]))
        values = _by_tensor(tf_taps.run(taps, session.images), g.taps)
        session.saved_model = (taps, values)
    return session.saved_model


def _saved_model(session: _Session) -> dict:
    g = session.graph(SIM_GRAPH)
    taps, values = _saved_model_taps(session)
    job = session.job
    ref = Reference(g.reference.pytorch, g.reference.labels, [("onnx_sim", g.onnxruntime)])
    onnx_ops = {t: g.info.producer[g.taps[t]].op_type for t in g.taps}
    engine = {g.taps[t]: n for t, n in tf_taps.engine_nodes(taps.saved_model, taps.keys, onnx_ops).items()}
    artifact = job.artifact_dir / "saved_model"
    notes, extra = faithfulness(session, "saved_model", values, g,
                                tf_taps.op_histogram(artifact) if (artifact / "saved_model.pb").is_file() else None,
                                tf_taps.op_histogram(taps.saved_model))
    extra["backend"] = session.backend()
    missing = {g.taps[t]: why for t, why in taps.missing.items()}
    return _result(g, values, ref, session, missing, engine, notes, extra)


def _tfjs(session: _Session) -> dict:
    g = session.graph(SIM_GRAPH)
    job = session.job
    if session.quantize():
        return {"first_divergence": None, "localization": {
            "skipped": f"quantized ({session.quantize()}) weights: every tensor differs from PyTorch by design; "
                       f"the stage is judged on AP, not localised"}}
    taps, sm_values = _saved_model_taps(session)
    model_json = tfjs_taps.convert(taps.saved_model, session.work / "tfjs", session.quantize())
    names = tfjs_taps.output_names(model_json, taps.keys)
    bad = tfjs_taps.check_shapes(model_json, names, taps.shapes)
    if bad:
        raise RuntimeError(f"TFJS outputs do not line up with the SavedModel's (shapes differ at {bad[:3]})")
    values = _by_tensor(tfjs_taps.run(model_json, names, taps, session.images, job.tfjs_backend), g.taps)
    ref = Reference(g.reference.pytorch, g.reference.labels,
                    [("saved_model", sm_values), ("onnx_sim", g.onnxruntime)])
    onnx_ops = {t: g.info.producer[g.taps[t]].op_type for t in g.taps}
    traced = tfjs_taps.engine_nodes(model_json, names, onnx_ops)
    engine = {g.taps[t]: _engine_text(n) for t, n in traced.items()}
    artifact = job.artifact_dir / "tfjs" / "model.json"
    notes, extra = faithfulness(session, "tfjs", values, g,
                                tfjs_taps.op_histogram(artifact) if artifact.is_file() else None,
                                tfjs_taps.op_histogram(model_json))
    extra.update(backend=session.backend(), tfjs_backend=job.tfjs_backend)
    missing = {g.taps[t]: why for t, why in {**taps.missing, **tfjs_taps.fused_past(traced, onnx_ops)}.items()}
    for t in missing:
        for v in values:
            v.pop(t, None)
    return _result(g, values, ref, session, missing, engine, notes, extra)


def _engine_text(node: dict) -> str:
    fused = f" fused {'+'.join(node['fused_ops'])}" if node.get("fused_ops") else ""
    return f"{node['name']} ({node['op']}{fused})"


STAGES = {"onnx": _onnx, "onnx_sim": _onnx_sim, "saved_model": _saved_model, "tfjs": _tfjs}


# -- is the instrumented copy the artifact? ------------------------------------------------------------------

def faithfulness(session: _Session, stage: str, values: list[dict], graph: TappedGraph, artifact_ops: dict | None,
                 instrumented_ops: dict) -> tuple[list[str], dict]:
    """(notes, facts): how far the instrumented copy's final outputs are from the artifact's own on the same
    images (where the validation has a runner of it), and the op types whose counts instrumenting changed
    (fusions it prevented; ``artifact_ops`` None: no artifact to compare with)."""
    notes, extra = [], {}
    runner = session.job.runners.get(stage)
    outputs = [n for n in graph.info.outputs if values and n in values[0]]
    if runner is not None and outputs:
        got = runner.run(session.images)
        over, worst = [], 0.0
        for n in outputs:
            mine = np.concatenate([v[n] for v in values])
            if n not in got or got[n].shape != mine.shape:
                continue
            d = float(np.abs(mine.astype(np.float64) - got[n]).max())
            worst = max(worst, d)
            if not d <= tolerance(float(np.abs(got[n]).max()), session.job.atol, session.job.rtol):
                over.append(n)
        extra["instrumented_vs_artifact_max_abs_diff"] = worst
        if over:
            notes.append(f"the instrumented copy's outputs differ from the artifact's beyond the tolerance "
                         f"({', '.join(over)}; up to {worst:.3g}): the localisation describes the instrumented "
                         f"copy (built by the backend's code of today); the artifact's own outputs decide PASS/FAIL")
    artifact_ops = instrumented_ops if artifact_ops is None else artifact_ops
    changed = {op: [artifact_ops.get(op, 0), instrumented_ops.get(op, 0)]
               for op in sorted(set(artifact_ops) | set(instrumented_ops))
               if artifact_ops.get(op, 0) != instrumented_ops.get(op, 0)}
    if changed:
        extra["fusion"] = {"artifact_vs_instrumented_op_counts": changed}
        notes.append("instrumenting changed what the engine fuses or rewrites (op counts artifact -> instrumented: "
                     + ", ".join(f"{op} {a} -> {b}" for op, (a, b) in changed.items())
                     + "): the tapped tensors are computed unfused there; the artifact's own outputs decide "
                       "PASS/FAIL")
    return notes, extra
