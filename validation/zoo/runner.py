"""One zoo row: convert one config with the toolkit's own command line, in a child process, and read back what
it built, what its validation found and how its deployed graph compares with the structural oracle.

The child is exactly what a user runs (``python -m commands convert --config FILE --out DIR --limit N
--no-localize --no-audit ...``; a failing stage can be localised afterwards with ``validate --localize``), so a
row says what ``make convert CONFIG=FILE`` does; a child per config also keeps one config's crash or memory out
of the next one's. Its output goes to ``<out>/logs/<config>.log``. Exit 2 is the
converter's one-line refusal (the row's "builds" cell), exit 1 a failed validation or a tool failure.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from contracts.paths import PROJECT_ROOT
from converters.options import ConvertOptions, artifact_name

from .expected import expected_refusal, lookup
from .oracle import check_oracle, oracle_path
from .weights import choose_weights

STAGES = ("onnx", "onnx_sim", "saved_model", "tfjs")
FAMILIES = {"NanoDetHead": "legacy", "NanoDetPlusHead": "Plus"}
CHILD_TIMEOUT_S = 1800


@dataclass
class ZooSettings:
    out: Path                      # the zoo's output folder: one artifact folder per config, logs/, zoo.json
    backend: str
    limit: int                     # validation images per config
    until: str | None = None       # the last stage to build (None: all)
    audit: bool = False            # the int64 audit too (off: it does not judge a stage)
    random_weights: bool = False   # never the toolkit's real checkpoints


def read_raw(path: Path):
    """The YAML as a dict, or None where it is not readable (the converter then says why)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


def describe(raw) -> tuple[str, str]:
    """(family, "backbone size / neck") from the raw YAML, whether or not the toolkit can build it."""
    head, backbone, fpn = (lookup(raw, f"model.arch.{k}.name") for k in ("head", "backbone", "fpn"))
    size = lookup(raw, "model.arch.backbone.model_size") or lookup(raw, "model.arch.backbone.model_name") or ""
    arch = f"{backbone or '?'}{f' {size}' if size else ''} / {fpn or '?'}"
    return FAMILIES.get(head, head or "?"), arch


def child_command(path: Path, folder: Path, settings: ZooSettings, checkpoint: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "commands", "convert", "--config", str(path), "--out", str(folder),
           "--backend", settings.backend, "--limit", str(settings.limit), "--no-localize"]
    if not settings.audit:
        cmd.append("--no-audit")
    if settings.until:
        cmd += ["--until", settings.until]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    return cmd


def last_error(log_text: str) -> str:
    """The child's last ``error:`` line without the prefix, else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    return lines[-1] if lines else "no output"


def fresh_json(path: Path, since: float) -> dict | None:
    """The JSON file where this run wrote it (modified after ``since``), else None: a file an earlier run left
    describes other files."""
    try:
        if path.stat().st_mtime < since:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stage_cells(manifest: dict | None, report: dict | None) -> dict[str, str]:
    """Per conversion stage: PASS / FAIL (its validation), "built" (not validated), or "-" (not built)."""
    built = set((manifest or {}).get("stages_completed") or [])
    judged = (report or {}).get("stages") or {}
    cells = {}
    for name in STAGES:
        if name in judged:
            cells[name] = "PASS" if judged[name].get("pass") else "FAIL"
        else:
            cells[name] = "built" if name in built else "-"
    return cells


def worst(report: dict | None) -> tuple[float | None, float | None, float | None, float | None]:
    """(worst max_abs_diff, lowest matched fraction, lowest AP) over the converted stages, and PyTorch's AP."""
    stages = (report or {}).get("stages") or {}
    diffs = [s.get("max_abs_diff") for n, s in stages.items() if n != "pytorch"]
    matched = [s.get("matched_fraction") for n, s in stages.items() if n != "pytorch"]
    diffs = [d for d in diffs if isinstance(d, (int, float))]
    matched = [m for m in matched if isinstance(m, (int, float))]
    aps = [s.get("ap") for n, s in stages.items() if n != "pytorch"]
    aps = [a for a in aps if isinstance(a, (int, float))]
    ap = (stages.get("pytorch") or {}).get("ap")
    return (max(diffs) if diffs else None, min(matched) if matched else None, min(aps) if aps else None, ap)


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of the finished child processes so far, theirs included: a row's cost that does
    not depend on what else the machine runs (its wall time does)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(cmd: list[str], log_path: Path) -> tuple[int | None, float, float]:
    """Run ``cmd`` from the project root, its output into ``log_path``; (exit code or None on timeout, wall
    seconds, CPU seconds)."""
    t0, cpu0 = time.time(), children_cpu_seconds()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        try:
            code = subprocess.run(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=CHILD_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            code = None
    return code, time.time() - t0, children_cpu_seconds() - cpu0


def oracle_result(config_stem: str, folder: Path, built: bool) -> dict | None:
    """The oracle check of the deployed graph, where an oracle exists for the config (None otherwise)."""
    oracle = oracle_path(config_stem)
    if oracle is None:
        return None
    sim = folder / "model.sim.onnx"
    if not (built and sim.is_file()):
        return {"pass": False, "error": "no model.sim.onnx built"}
    try:
        return check_oracle(sim, oracle)
    except (OSError, ValueError, KeyError) as exc:
        return {"pass": False, "error": f"{exc.__class__.__name__}: {exc}"}


def run_config(path: Path, settings: ZooSettings, known_weights: dict) -> dict:
    """Convert and validate one config; returns its row (see ``validation.zoo.table`` for the columns)."""
    path = Path(path)
    raw = read_raw(path)
    family, arch = describe(raw)
    choice = choose_weights(raw, known_weights, settings.random_weights)
    expected = expected_refusal(path, raw)
    name = artifact_name(path.stem, ConvertOptions(backend=settings.backend))
    folder = settings.out / name
    log_path = settings.out / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    code, seconds, cpu = run_child(child_command(path, folder, settings, choice.checkpoint), log_path)
    log_text = log_path.read_text(errors="replace")
    row = {"config": path.name, "family": family, "arch": arch, "artifact": name,
           "log": str(log_path.relative_to(settings.out)), "seconds": round(seconds, 1),
           "cpu_seconds": round(cpu, 1), "exit": code, "expected_refusal": expected.reason if expected else None}
    if code == 2:
        refusal = last_error(log_text).removeprefix(f"{path}: ")   # the row names the config already
        row.update(builds=refusal, weights="-", stages=stage_cells(None, None),
                   max_abs_diff=None, matched=None, ap=None, stage_ap=None, oracle=None,
                   result="EXPECTED REFUSAL" if expected else "REFUSED")
        return row
    manifest = fresh_json(folder / "manifest.json", started)
    report = fresh_json(folder / "validation.json", started)
    diff, matched, stage_ap, ap = worst(report)
    oracle = oracle_result(path.stem, folder, manifest is not None)
    ok = code == 0 and report is not None and report.get("pass") is True and (oracle is None or oracle["pass"])
    row.update(builds="yes" if manifest else f"no: {last_error(log_text)}",
               weights=choice.text((manifest or {}).get("weights")), stages=stage_cells(manifest, report),
               max_abs_diff=diff, matched=matched, ap=ap, stage_ap=stage_ap, oracle=oracle,
               result="PASS" if ok else "FAIL")
    if not ok:
        row["error"] = "timed out" if code is None else (
            "oracle: structure differs" if code == 0 and oracle and not oracle["pass"] else last_error(log_text))
    return row
