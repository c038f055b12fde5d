"""The first tensor, in the graph's topological order, where a stage stops computing what PyTorch computes.

Every tapped tensor of the stage's graph is compared, over the localisation images, with its reference and
judged like a stage output: ``|stage - reference| <= atol + rtol * scale``, scale = the tensor's max |reference|
(``comparators.output_tolerance``, the stage's own atol / rtol).

The reference of a tensor:

1. PyTorch's value where the tensor holds a module output (``mapping``), and the input image for the input.
2. Else, the value an earlier stage computed there (nearest first: for tfjs the instrumented SavedModel, then
   onnxruntime on the simplified graph), but only where that stage agreed with PyTorch *around* the tensor: on
   every PyTorch-mapped tensor the region of unmapped tensors holding it starts from and on every one it ends in
   (its nearest mapped ancestors and descendants; the graph's outputs are always mapped). Why that is enough:
   the earlier stage then received right values, and whatever it computed inside the region reached every exit
   of the region right, so an error of its own inside the region would have to vanish on every path before the
   next module output: something the next ops (a ReLU, a max pool, a crop) can do, which is why this is a
   reference of second rank, said in ``reference`` of each row. A stage that had no such earlier stage (the onnx
   stage) leaves unmapped tensors without a reference: they are not judged, and a divergence found at the next
   mapped tensor lists them (``unjudged_before``) as where it may have started.
3. Else none: the tensor is not judged.

A tensor the stage does not hand back (a layout that cannot be told, an output a converter dropped) is "not
reached". The result is the first tensor judged to differ, with its node, its inputs' differences, the nodes
before it that were not judged (``unjudged_before``: it may start there) and the chain before it; ``None``
where every judged tensor agrees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..comparators import output_tolerance
from .onnx_taps import GraphInfo

AGREES, DIFFERS, NO_REFERENCE, NOT_REACHED = "agrees", "DIFFERS", "no reference", "not reached"
CHAIN_BEFORE = 6      # agreeing tensors listed before the first divergence (its inputs first)
UNJUDGED_LISTED = 20  # nodes listed as "unjudged before"


@dataclass
class Stats:
    """One engine against one reference, per tensor, over all images."""
    max_abs_diff: dict = field(default_factory=dict)   # tensor -> float (inf where non-finite)
    scale: dict = field(default_factory=dict)          # tensor -> max |reference|
    shape_error: dict = field(default_factory=dict)    # tensor -> "shape [..] != reference [..]"


def pair_stats(got: list[dict], ref: list[dict], tensors) -> Stats:
    """|got - ref| over the images for every tensor both have."""
    stats = Stats()
    for g_img, r_img in zip(got, ref):
        for t in tensors:
            g, r = g_img.get(t), r_img.get(t)
            if g is None or r is None:
                continue
            if g.shape != r.shape:
                stats.shape_error[t] = f"shape {list(g.shape)} != reference {list(r.shape)}"
                continue
            d = np.abs(g.astype(np.float64) - r.astype(np.float64))
            mx = float(d.max()) if d.size else 0.0
            mx = mx if math.isfinite(mx) else math.inf
            fin = np.abs(r[np.isfinite(r)])
            stats.max_abs_diff[t] = max(stats.max_abs_diff.get(t, 0.0), mx)
            stats.scale[t] = max(stats.scale.get(t, 0.0), float(fin.max()) if fin.size else 0.0)
    return stats


def tolerance(scale: float, atol: float, rtol: float) -> float:
    return output_tolerance(np.float64(scale), atol, rtol)["tolerance"]


def agrees(stats: Stats, tensor: str, atol: float, rtol: float) -> bool:
    d = stats.max_abs_diff.get(tensor)
    return d is not None and tensor not in stats.shape_error and d <= tolerance(stats.scale[tensor], atol, rtol)


class Boundaries:
    """The nearest mapped ancestors and descendants of unmapped tensors (through unmapped ones only)."""

    def __init__(self, info: GraphInfo, mapped: set):
        self.info, self.mapped = info, mapped
        self._up: dict = {}
        self._down: dict = {}

    def up(self, tensor: str) -> frozenset:
        if tensor not in self._up:
            node = self.info.producer.get(tensor)
            found = set()
            for name in (node.input if node is not None else []):
                if not name or name in self.info.constant:
                    continue
                found |= {name} if name in self.mapped else self.up(name)
            self._up[tensor] = frozenset(found)
        return self._up[tensor]

    def down(self, tensor: str) -> frozenset:
        if tensor not in self._down:
            found = set()
            for node in self.info.consumers.get(tensor, []):
                for name in node.output:
                    if name and name not in self.info.constant:
                        found |= {name} if name in self.mapped else self.down(name)
            self._down[tensor] = frozenset(found)
        return self._down[tensor]

    def around(self, tensor: str) -> frozenset:
        return self.up(tensor) | self.down(tensor)


@dataclass
class Reference:
    """Where the references come from: PyTorch's mapped values, and earlier stages in the order to try them."""
    pytorch: list[dict]                                  # per image: tensor -> PyTorch value (input included)
    labels: dict                                         # tensor -> module name
    earlier: list = field(default_factory=list)          # [(stage name, per-image values)], nearest first


def judge(info: GraphInfo, stage: list[dict], ref: Reference, atol: float, rtol: float,
          missing: dict | None = None) -> list[dict]:
    """One row per tapped tensor in graph order: tensor, node, op_type, status, max_abs_diff, tolerance,
    reference (``missing``: tensor -> why the stage did not hand it back)."""
    tensors = info.tapped()
    mapped = set(ref.pytorch[0]) if ref.pytorch else set()
    bounds = Boundaries(info, mapped)
    earlier = [(name, values, pair_stats(values, ref.pytorch, mapped)) for name, values in ref.earlier]
    rows = []
    for t in tensors:
        node = info.producer.get(t)
        row = {"tensor": t, "node": node.name if node is not None else None,
               "op_type": node.op_type if node is not None else "(input)"}
        if t in mapped:
            refs, row["reference"] = ref.pytorch, f"pytorch {ref.labels.get(t, 'input')}"
        else:
            refs = None
            for name, values, vs_torch in earlier:
                if values and t in values[0] and all(agrees(vs_torch, m, atol, rtol) for m in bounds.around(t)):
                    refs, row["reference"] = values, f"{name} (agreed with pytorch around it)"
                    break
        rows.append(_judged(row, t, stage, refs, atol, rtol, (missing or {}).get(t)))
    return rows


def _judged(row: dict, t: str, stage: list[dict], refs, atol: float, rtol: float, missing: str | None) -> dict:
    if refs is None:
        row.update(status=NO_REFERENCE, max_abs_diff=None, tolerance=None)
        return row
    if not stage or t not in stage[0]:
        row.update(status=NOT_REACHED, max_abs_diff=None, tolerance=None, why=missing or "not handed back")
        return row
    s = pair_stats(stage, refs, [t])
    if t in s.shape_error:
        row.update(status=DIFFERS, max_abs_diff=None, tolerance=None, why=s.shape_error[t])
        return row
    tol = tolerance(s.scale[t], atol, rtol)
    d = s.max_abs_diff[t]
    row.update(status=AGREES if d <= tol else DIFFERS, max_abs_diff=d if math.isfinite(d) else None,
               tolerance=tol)
    if not math.isfinite(d):
        row["why"] = "non-finite values"
    return row


def first_divergence(info: GraphInfo, rows: list[dict]) -> dict | None:
    """The first row that differs, as the report's ``first_divergence`` (None where none differs)."""
    by_tensor = {r["tensor"]: r for r in rows}
    first = next((r for r in rows if r["status"] == DIFFERS), None)
    if first is None:
        return None
    node = info.producer.get(first["tensor"])
    inputs = [by_tensor[i] for i in (node.input if node is not None else []) if i in by_tensor]
    judged = [r["max_abs_diff"] for r in inputs if r["status"] in (AGREES, DIFFERS)]
    out = {"node": first["node"], "op_type": first["op_type"], "tensor": first["tensor"],
           "max_abs_diff": first["max_abs_diff"], "tolerance": first["tolerance"],
           "reference": first.get("reference"),
           "inputs_max_abs_diff": (None if any(d is None for d in judged) else max(judged)) if judged else None,
           "inputs": [_brief(r) for r in inputs]}
    if first.get("why"):
        out["why"] = first["why"]
    unjudged = unjudged_before(info, first["tensor"], by_tensor)
    if unjudged:
        out["unjudged_before"] = unjudged
    out["chain"] = chain(info, first["tensor"], by_tensor)
    return out


def _brief(row: dict) -> dict:
    keys = ("tensor", "node", "op_type", "status", "max_abs_diff", "tolerance", "reference", "why")
    return {k: row[k] for k in keys if k in row}


def unjudged_before(info: GraphInfo, tensor: str, rows: dict) -> list[str]:
    """The nodes before ``tensor`` whose outputs were not judged (no reference, or not reached), back to judged
    tensors: where a divergence first seen at ``tensor`` may have started."""
    found, todo, seen = [], [tensor], set()
    while todo and len(found) < UNJUDGED_LISTED:
        node = info.producer.get(todo.pop())
        for name in (node.input if node is not None else []):
            r = rows.get(name)
            if r is None or name in seen or r["status"] not in (NO_REFERENCE, NOT_REACHED):
                continue
            seen.add(name)
            found.append(info.producer[name].name)
            todo.append(name)
    return found


def chain(info: GraphInfo, tensor: str, rows: dict) -> list[dict]:
    """The last judged tensors before ``tensor`` (its inputs first, then theirs), and ``tensor`` itself."""
    before, frontier, seen = [], [tensor], {tensor}
    while frontier and len(before) < CHAIN_BEFORE:
        nxt = []
        for t in frontier:
            node = info.producer.get(t)
            for name in (node.input if node is not None else []):
                if name in rows and name not in seen:
                    seen.add(name)
                    nxt.append(name)
                    if rows[name]["status"] in (AGREES, DIFFERS):
                        before.append(_brief(rows[name]))
        frontier = nxt
    order = {r: i for i, r in enumerate(rows)}
    before = sorted(before[:CHAIN_BEFORE], key=lambda r: order.get(r["tensor"], 0))
    return before + [_brief(rows[tensor])]


def summary(rows: list[dict]) -> dict:
    """How many tensors were judged against which reference, and how many were not."""
    counts: dict = {}
    for r in rows:
        key = r["status"] if r["status"] in (NO_REFERENCE, NOT_REACHED) else \
            ("pytorch" if str(r.get("reference", "")).startswith("pytorch") else r["reference"].split(" ")[0])
        counts[key] = counts.get(key, 0) + 1
    return {"tensors": len(rows), "judged_against": {k: v for k, v in counts.items()
                                                      if k not in (NO_REFERENCE, NOT_REACHED)},
            "no_reference": counts.get(NO_REFERENCE, 0), "not_reached": counts.get(NOT_REACHED, 0),
            "differ": sum(r["status"] == DIFFERS for r in rows)}
