"""The browser part of a bench run: the Chromium rows (``chromium_rows``), the browser fidelity stages on one of
our artifacts (``validation.browser_stages``: Chromium wasm and WebGL half-float storage, next to the Node tfjs
stage, through ``validation.api.validate_artifacts``), and their markdown. Where Chromium is absent, the part is
skipped with a one-line note (not a failure).
"""
from __future__ import annotations

from pathlib import Path

from contracts.errors import UserError

from .chromium_rows import measure_chromium
from .progress import log
from .rendering import fmt
from .runtime_table import footnote, node_rows, runtime_targets, table
from .variants import PROFILED, VARIANTS

FIDELITY_STAGES = ("tfjs", "tfjs_chromium", "tfjs_webgl_f16")


def fidelity_artifact(variants: dict) -> Path | None:
    """The artifact the fidelity stages validate: the profiled variant, else the first float32 one built."""
    order = [PROFILED] + [label for label, _, quantize in VARIANTS if quantize is None]
    return next((variants[label] for label in order if isinstance(variants.get(label), Path)), None)


def measure_fidelity(cfg, artifact: Path, out_dir: Path, limit: int | None) -> tuple[dict, list[str]]:
    """The browser stages (and the Node tfjs stage beside them) of ``artifact``; (summary, failures)."""
    from validation.api import validate_artifacts

    log(f"- browser fidelity stages on {artifact.name} ({', '.join(FIDELITY_STAGES)})")
    report = validate_artifacts(artifact, cfg, stages=list(FIDELITY_STAGES), out_dir=out_dir, pictures=0,
                                localize="none", limit=limit, log=log)
    stages = {name: {k: s.get(k) for k in ("pass", "max_abs_diff", "matched_fraction", "ap", "ap_delta", "criteria",
                                           "failures", "quantized")}
              for name, s in report["stages"].items()}
    failures = [f"fidelity stage {name}: {'; '.join(s['failures'][:2])}" for name, s in stages.items()
                if name != "pytorch" and not s["pass"]]
    return {"artifact": artifact.name, "images": report["images"], "report": str(out_dir / "report.md"),
            "tolerances": {k: v for k, v in report["tolerances"].items() if k.startswith("half_float")},
            "stages": stages}, failures


def measure_browser(args, cfg, data, rows: list[dict], measured: dict, variants: dict, out_dir: Path) -> dict:
    """Everything the browser part measured: {"rows", "fidelity", "facts", "failures", "note"}."""
    from validation.browser_stages import skip_note

    note = skip_note()
    if note:
        log(f"- {note}")
        return {"rows": [], "fidelity": None, "facts": {}, "failures": [], "note": note}
    try:
        browser_rows, failures, facts = measure_chromium(measured, data, args.rounds, args.per_round,
                                                         args.webgl_images)
    except (UserError, RuntimeError, OSError) as exc:   # the browser did not even start: the part failed
        log(f"  error: {exc}")
        browser_rows, failures, facts = [], [f"Chromium: {exc}"], {}
    fidelity = None
    artifact = fidelity_artifact(variants)
    if artifact is not None:
        try:
            fidelity, more = measure_fidelity(cfg, artifact, out_dir / f"browser-stages-{artifact.name}",
                                              args.images)
            failures += more
        except (RuntimeError, OSError) as exc:
            log(f"  error: {exc}")
            failures.append(f"browser fidelity stages: {exc}")
    return {"rows": browser_rows, "fidelity": fidelity, "facts": facts, "failures": failures, "note": None}


def all_runtime_rows(rows: list[dict], browser: dict) -> list[dict]:
    return node_rows(rows) + browser["rows"]


def render_browser(rows: list[dict], browser: dict, node: str) -> str:
    """The markdown of the browser part: the latency-by-runtime table, its footnote, the fidelity table."""
    lines = ["", "Latency by runtime (Node and Chromium; TFJS and onnxruntime-web):", ""]
    lines += table(all_runtime_rows(rows, browser))
    lines += ["", footnote({**(browser.get("facts") or {}), "node": node})]
    if browser.get("note"):
        lines += ["", f"Chromium rows and browser fidelity stages: {browser['note']}"]
    fid = browser.get("fidelity")
    if fid:
        lines += ["", f"Browser fidelity ({fid['artifact']}, {fid['images']} images, against PyTorch; "
                      f"{fid['report']}):", "",
                  "| stage | result | max_abs_diff | matched | AP | criteria |", "|---|---|---:|---:|---:|---|"]
        for name, s in fid["stages"].items():
            if name == "pytorch":
                continue
            lines.append(f"| {name} | {'PASS' if s['pass'] else 'FAIL'} | {sci(s['max_abs_diff'])} | "
                         f"{fmt(s['matched_fraction'], 3)} | {fmt(s['ap'], 3)} | {s['criteria']} |")
    return "\n".join(lines) + "\n"


def browser_targets(rows: list[dict], browser: dict) -> list[str]:
    return runtime_targets(rows, all_runtime_rows(rows, browser))


def targets_text(lines: list[str]) -> str:
    """The "Targets:" section that ends the markdown (the Node ones first, then the browser ones)."""
    return "\nTargets:\n" + "".join(f"- {t}\n" for t in lines) if lines else ""


def sci(v) -> str:
    return "-" if v is None else f"{v:.3g}"
