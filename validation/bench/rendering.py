"""The bench's tables: the markdown / console table of every row, the kernel split of the profiled rows side by
side, and the target lines (speed and size against the peer, and what bounds the speed-up)."""
from __future__ import annotations

from .variants import PROFILED

AP_TOLERANCE = 0.002      # "same accuracy as PyTorch" for the speed target
SPEED_TARGET = 2.0        # x faster than the peer (median warm, wasm)
HEADER = ["| artifact | size (bytes) | ops (Transpose) | wasm load / first / median ms | "
          "cpu load / first / median ms | AP | AP50 | wasm speed vs peer | size vs peer |",
          "|---|---:|---:|---|---|---:|---:|---:|---:|"]


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def measured(rows: list[dict], label: str | None = None, peer: bool = False) -> dict | None:
    """The first row without an error that is the peer (``peer``) or has ``label``; None where there is none."""
    return next((r for r in rows if not r.get("error") and (r.get("peer") if peer else r["label"] == label)), None)


def render(rows: list[dict], meta: dict) -> str:
    """The whole markdown text: title, table, footnote, kernel split, targets."""
    peer = measured(rows, peer=True)
    lines = [f"### `make bench {meta.get('make_args') or 'MODEL=' + meta['model']}` ({meta['date']}, {meta['images']} images, "
             f"{meta['device']})", "", *HEADER]
    lines += [table_line(r, peer) for r in rows]
    lines += ["", footnote(meta)]
    lines += kernel_table(rows)
    if meta.get("targets"):
        lines += ["", "Targets:"] + [f"- {t}" for t in meta["targets"]]
    return "\n".join(lines) + "\n"


def timings_text(t: dict | None, bold: bool = False) -> str:
    """``load / first / median`` milliseconds, the median in bold for the main latency column."""
    if t is None:
        return "-"
    median = f"**{fmt(t['median_ms'])}**" if bold else fmt(t["median_ms"])
    return f"{fmt(t['load_ms'], 0)} / {fmt(t['first_ms'], 0)} / {median}"


def table_line(r: dict, peer: dict | None) -> str:
    """One row of the table; a failed row says why in its size column."""
    if r.get("error"):
        return f"| {r['label']} | error: {r['error']} | | | | | | | |"
    ops = f"{r['ops']} ({r['transposes']})" if r.get("ops") is not None else "-"
    lat_txt = timings_text(r.get("wasm") or r.get("python"), bold=True)
    if "python" in r:
        lat_txt += " (Python)"
    speed = size = "-"
    if peer and r.get("wasm") and r["wasm"].get("median_ms") and r["wasm"].get("requested_threads", 1) == 1:
        speed = f"{peer['wasm']['median_ms'] / r['wasm']['median_ms']:.2f}x"
    if peer and r.get("size") and r.get("wasm"):
        size = f"{r['size'] / peer['size']:.2f}"
    ap = r.get("ap") or {}
    return (f"| {r['label']} | {fmt(r.get('size'))} | {ops} | {lat_txt} | {timings_text(r.get('cpu'))} | "
            f"{fmt(ap.get('ap'), 3)} | {fmt(ap.get('ap50'), 3)} | {speed} | {size} |")


def footnote(meta: dict) -> str:
    return ("Latency: TFJS rows in Node (tfjs 4.22 " + meta.get("wasm_note", "") + "); the median is over "
            f"warm inferences (wasm: {meta.get('interleave', 'the AP run')}, every model once per round, so "
            "that load from other processes hits all rows alike; cpu: a few). PyTorch / onnxruntime rows: Python, "
            f"{meta.get('torch_threads')} threads, not comparable with the Node rows. Ops: graph nodes other "
            "than Const/Placeholder/Identity/NoOp.")


def kernel_table(rows: list[dict], top: int = 10) -> list[str]:
    """Kernel time per kernel name for the profiled rows, side by side (the slowest ``top`` of each)."""
    profiled = [r for r in rows if r.get("profile") and not r.get("error")]
    if not profiled:
        return []
    names: list[str] = []
    for r in profiled:
        names += [k for k in list(r["profile"]["kernels_ms"])[:top] if k not in names]
    head = " | ".join(f"{r['label']} ms" for r in profiled)
    lines = ["", f"Kernel time per inference (tf.profile, wasm, median of {profiled[0]['profile']['runs']}; "
             "the slowest kernels of each):", "", f"| kernel | {head} |",
             "|---|" + "---:|" * len(profiled)]
    for k in names:
        lines.append(f"| {k} | " + " | ".join(fmt(r["profile"]["kernels_ms"].get(k), 2) for r in profiled) + " |")
    lines.append("| **all kernels** | " + " | ".join(f"**{fmt(r['profile']['total_ms'])}**" for r in profiled)
                 + " |")
    return lines


def targets(rows: list[dict]) -> list[str]:
    """The target lines: speed (fastest model within the AP window vs the peer), where the profiled model's time
    goes, and the size of every float16 model vs the peer. None without a measured peer and PyTorch row."""
    peer, torch_row = measured(rows, peer=True), measured(rows, "PyTorch")
    if not peer or not torch_row:
        return []
    ours = [r for r in rows if r.get("wasm") and r.get("ap") and not r.get("peer") and not r.get("error")
            and not r.get("alternative")]   # onnxruntime-web rows are the alternative, not our TFJS models
    out = [speed_target(ours, peer, torch_row["ap"]["ap"])]
    profiled = next((r for r in ours if r["label"] == PROFILED and r.get("profile")), None)
    if profiled:
        out.append(convolution_share(profiled, peer))
    for r in ours:
        if "float16" in r["label"]:
            ok = r["size"] <= peer["size"]
            out.append(f"{r['label']} size {r['size']:,} vs peer {peer['size']:,} bytes: "
                       f"{'MET' if ok else 'NOT MET'}")
    return out


def speed_target(ours: list[dict], peer: dict, ref_ap: float) -> str:
    """The fastest of our rows whose AP is within ``AP_TOLERANCE`` of PyTorch's, against ``SPEED_TARGET``."""
    good = [r for r in ours if abs(r["ap"]["ap"] - ref_ap) <= AP_TOLERANCE]
    if not good:
        return f"no TFJS model has AP within {AP_TOLERANCE} of PyTorch ({ref_ap:.3f}): speed target NOT MET"
    best = min(good, key=lambda r: r["wasm"]["median_ms"])
    ratio = peer["wasm"]["median_ms"] / best["wasm"]["median_ms"]
    return (f"fastest TFJS model with AP within {AP_TOLERANCE} of PyTorch ({ref_ap:.3f}): {best['label']}, "
            f"{best['wasm']['median_ms']:.1f} ms vs peer {peer['wasm']['median_ms']:.1f} ms = {ratio:.2f}x "
            f"(target >= {SPEED_TARGET}x): {'MET' if ratio >= SPEED_TARGET else 'NOT MET'}")


def convolution_share(profiled: dict, peer: dict) -> str:
    """Where the profiled model's wall time goes, and whether the convolutions alone leave room for the target."""
    need = peer["wasm"]["median_ms"] / SPEED_TARGET
    prof, wall = profiled["profile"], profiled["wasm"]["median_ms"]
    conv, rest = prof["conv_ms"], wall - prof["conv_ms"]
    verdict = ("the convolutions alone are above that: out of reach for any model that runs them with TFJS's "
               "wasm kernels" if conv > need else
               f"everything but the convolutions would have to fit in {need - conv:.1f} ms (now {rest:.1f} ms)")
    return (f"where {PROFILED}'s {wall:.1f} ms go: the network's convolutions (fused conv / depthwise "
            f"kernels, tf.profile, median of {prof['runs']}) {conv:.1f} ms, everything else (other kernels "
            f"{prof['total_ms'] - conv:.1f} ms, graph execution, feed and read-back) {rest:.1f} ms; 2x the "
            f"peer needs <= {need:.1f} ms in all: {verdict}")
