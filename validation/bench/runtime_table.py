"""The bench's latency-by-runtime table and the issue's runtime targets: every row that has a latency (Node and
Chromium, TFJS and onnxruntime-web), its runtime, backend, threads as measured, median, AP, and its ratios to the
peer and to onnxruntime-web measured with the same runtime and thread count.

A "group" is (runtime, backend, threads asked for): ratios compare rows of one group only (their medians come
from the same interleaved rounds). "Exact" is the speed target's meaning: AP within ``rendering.AP_TOLERANCE`` of
PyTorch's.
"""
from __future__ import annotations

from .ort_web import ALTERNATIVE, thread_counts
from .rendering import AP_TOLERANCE, fmt, measured

CHROMIUM_PEER_TARGET = 2.5   # x the peer, Chromium wasm with all cores
HEADER = ["| artifact | runtime | backend | threads | load / first / median ms | AP | vs peer | vs onnxruntime-web |",
          "|---|---|---|---|---|---:|---:|---:|"]


def node_rows(rows: list[dict]) -> list[dict]:
    """The Node rows (main table) in the shape of the Chromium rows: tfjs-backend-wasm in Node runs 1 thread (its
    multithread flag is false in Node), onnxruntime-web at what it was asked for."""
    out = []
    for r in rows:
        if "python" in r or not (r.get("wasm") or r.get("error")):
            continue
        w = r.get("wasm") or {}
        out.append({"label": r["label"], "runtime": "node", "backend": "wasm", "artifact": r.get("artifact"),
                    "requested_threads": w.get("requested_threads", 1), "threads": w.get("threads"),
                    "load_ms": w.get("load_ms"), "first_ms": w.get("first_ms"), "median_ms": w.get("median_ms"),
                    "ap": r.get("ap"), "peer": r.get("peer", False), "alternative": r.get("alternative"),
                    "error": r.get("error")})
    return out


def group(row: dict) -> tuple:
    return row["runtime"], row["backend"], row.get("requested_threads")


def in_group(rows: list[dict], key: tuple, peer: bool = False, alternative: bool = False) -> list[dict]:
    return [r for r in rows if group(r) == key and not r.get("error") and r.get("median_ms")
            and bool(r.get("peer")) == peer and bool(r.get("alternative")) == alternative]


def threads_text(r: dict) -> str:
    if r["backend"] == "webgl":
        return "- (GPU" + (f", {r['hosting']})" if r.get("hosting") else ")")
    got = r.get("threads")
    notes = [f"asked {r['requested_threads']}"] if r.get("requested_threads") not in (None, got) else []
    if r["runtime"] == "chromium":
        notes.append("isolated" if r.get("cross_origin_isolated") else "NOT isolated")
        if r.get("cap_lifted"):
            notes.append("cap lifted")
        if r.get("hosting"):
            notes.append(r["hosting"])   # main (the page's thread) | worker (a dedicated Web Worker)
    return f"{fmt(got)}" + (f" ({', '.join(notes)})" if notes else "")


def ratio_text(base: list[dict], r: dict) -> str:
    if not base or not r.get("median_ms"):
        return "-"
    return f"{base[0]['median_ms'] / r['median_ms']:.2f}x"


def table(all_rows: list[dict]) -> list[str]:
    """The markdown lines of the table."""
    lines = list(HEADER)
    for r in all_rows:
        backend = r["backend"] + (" (SwiftShader)" if r["backend"] == "webgl" else "")
        if r.get("error"):
            lines.append(f"| {r['label']} | {r['runtime']} | {backend} | {fmt(r.get('requested_threads'))} | "
                         f"error: {r['error']} | | | |")
            continue
        key = group(r)
        peer = in_group(all_rows, key, peer=True)
        ort = [] if r["backend"] != "wasm" else in_group(all_rows, key, alternative=True)
        ap = (r.get("ap") or {}).get("ap")
        lines.append(f"| {r['label']} | {r['runtime']} | {backend} | {threads_text(r)} | {fmt(r.get('load_ms'), 0)} / "
                     f"{fmt(r.get('first_ms'), 0)} / **{fmt(r.get('median_ms'))}** | {fmt(ap, 3)} | "
                     f"{'-' if r.get('peer') else ratio_text(peer, r)} | "
                     f"{'-' if r.get('alternative') else ratio_text(ort, r)} |")
    return lines


def footnote(facts: dict) -> str:
    return (f"Runtimes: Node {facts.get('node', '?')}; {facts.get('browser', 'Chromium not run')} headless, served "
            "cross-origin isolated (COOP/COEP) by the bench; tfjs 4.22 caps wasm threads at hardwareConcurrency / 2, "
            "lifted by the page (docs/benchmark.md); Chromium wasm rows say where the runtime ran: \"worker\" (a "
            "dedicated Web Worker, where threads block instead of spinning; every runtime alike) or \"main\" (the "
            "page's thread); WebGL through SwiftShader, a software renderer: its timings are not GPU timings, and "
            "its rows time a few images without AP. vs peer / vs onnxruntime-web: their median over ours, same "
            "runtime and threads, same interleaved rounds.")


def exact_ours(rows: list[dict], key: tuple, ref_ap: float) -> dict | None:
    """Our fastest TFJS row of the group whose AP is within AP_TOLERANCE of PyTorch's."""
    good = [r for r in in_group(rows, key) if r.get("ap") and abs(r["ap"]["ap"] - ref_ap) <= AP_TOLERANCE]
    return min(good, key=lambda r: r["median_ms"]) if good else None


def runtime_targets(main_rows: list[dict], all_rows: list[dict]) -> list[str]:
    """The targets of the browser issue: Chromium wasm all cores >= 2.5x the peer, and no slower than
    onnxruntime-web at the same runtime and threads; each with its verdict and by how much."""
    torch_row = measured(main_rows, "PyTorch")
    if not torch_row:
        return ["runtime targets: no PyTorch row, so no exact TFJS model can be named (run without --only)"]
    ref_ap = torch_row["ap"]["ap"]
    cores = max(thread_counts())
    out = []
    key = ("chromium", "wasm", cores)
    ours, peer = exact_ours(all_rows, key, ref_ap), in_group(all_rows, key, peer=True)
    if ours and peer:
        ratio = peer[0]["median_ms"] / ours["median_ms"]
        out.append(f"Chromium wasm {cores} threads: {ours['label']} {ours['median_ms']:.1f} ms vs peer "
                   f"{peer[0]['median_ms']:.1f} ms = {ratio:.2f}x (target >= {CHROMIUM_PEER_TARGET}x): "
                   f"{verdict(ratio, CHROMIUM_PEER_TARGET)}")
    elif peer:
        out.append(f"Chromium wasm {cores} threads: no exact TFJS model measured: NOT MET")
    for key in [("node", "wasm", 1)] + [("chromium", "wasm", t) for t in thread_counts()]:
        ours, ort = exact_ours(all_rows, key, ref_ap), in_group(all_rows, key, alternative=True)
        where = f"{key[0].capitalize()} wasm {key[2]} thread{'s' if key[2] != 1 else ''}"
        if not ort:
            continue
        if not ours:
            out.append(f"{where}: no exact TFJS model measured vs {ALTERNATIVE}: NOT MET")
            continue
        ratio = ort[0]["median_ms"] / ours["median_ms"]
        out.append(f"{where}: {ours['label']} {ours['median_ms']:.1f} ms vs {ALTERNATIVE} {ort[0]['median_ms']:.1f} "
                   f"ms = {ratio:.2f}x (target >= 1.00x, no slower): {verdict(ratio, 1.0)}")
    return out


def verdict(ratio: float, target: float) -> str:
    """MET, or NOT MET with how far: the speed-up still missing, in percent of our time."""
    if ratio >= target:
        return "MET"
    return f"NOT MET (needs {100 * (1 - ratio / target):.0f}% less time)"
