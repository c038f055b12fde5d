"""The conversion pipeline: PyTorch -> ONNX -> simplified ONNX -> SavedModel -> TFJS, cached and atomic.

Each stage has a cache key (its input hashes + options + package versions + the hash of the toolkit sources that
shape it). A stage whose key matches the manifest and whose output still has the recorded sha256 is reused;
otherwise it and every later stage are rebuilt (``force`` rebuilds all). A stage writes into a dot-named temp
folder beside its target and is renamed into place; only then is it marked completed in ``manifest.json``.
After the stages the optional hooks run (``validation.int64_audit.audit_artifact_dir`` then
``validation.api.validate_artifacts``), imported lazily and skipped where they do not exist yet.
"""
from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nanodet_ref.paths import PROJECT_ROOT, artifacts_dir

from . import manifest as manifest_mod
from . import stage_onnx, stage_onnx_sim, stage_saved_model, stage_tfjs
from .atomic import OLD_MARK, remove, staged_output, sweep
from .context import StageContext, log_stderr, signature
from .hashing import digest_of, file_hashes, source_hash, stage_key
from .options import DEFAULT_OPSET, ConvertOptions, artifact_name
from .sources import ModelSource

STAGES = (stage_onnx, stage_onnx_sim, stage_saved_model, stage_tfjs)
STAGE_NAMES = [s.NAME for s in STAGES]


@dataclass
class StageResult:
    name: str
    output: str
    size: int
    seconds: float
    cached: bool
    reused_from: str | None = None   # copied from a sibling artifact folder with the same stage key

    @property
    def cached_label(self) -> str:
        if self.reused_from:
            return f"yes ({self.reused_from})"
        return "yes" if self.cached else "no"


@dataclass
class RunResult:
    artifact_dir: Path
    stages: list[StageResult]
    seconds: float
    manifest: dict
    hooks: dict


def default_artifact_dir(source: ModelSource, options: ConvertOptions) -> Path:
    return artifacts_dir() / artifact_name(source.name, options, DEFAULT_OPSET)


def tree_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def key_parts(stage, ctx: StageContext, inputs: dict) -> dict:
    return {"inputs": inputs, "options": stage.key_options(ctx),
            "versions": {p: manifest_mod.package_version(p) for p in stage.PACKAGES},
            "code": source_hash(stage.code_files(ctx), PROJECT_ROOT)}


def compute_key(stage, ctx: StageContext, inputs: dict) -> str:
    return stage_key(stage=stage.NAME, **key_parts(stage, ctx, inputs))


def rebuild_reason(entry: dict | None, key: str, parts: dict, target: Path) -> str | None:
    """None where the stage is cached (same key, output still byte-identical), else why it must run."""
    if not entry:
        return "not built yet"
    if entry.get("key") != key:
        old = entry.get("key_parts")
        if not old:
            return "cache key changed"
        changed = [name for name in ("inputs", "options", "versions", "code") if old.get(name) != parts[name]]
        what = {"inputs": "input changed", "options": "options changed", "versions": "package versions changed",
                "code": "toolkit sources changed"}
        return ", ".join(what[c] for c in changed) or "cache key changed"
    if not target.exists():
        return "output missing"
    try:
        if digest_of(file_hashes(target)) != entry.get("digest"):
            return "output modified since it was built"
    except OSError:
        return "output unreadable"
    return None


def park(target: Path) -> Path | None:
    """Move a finished output into a dot-named folder beside it; returns its new path (None if absent)."""
    if not target.exists():
        return None
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}{OLD_MARK}", dir=target.parent)) / target.name
    os.replace(target, aside)
    return aside


def unpark(path: Path, entry: dict, key: str, target: Path) -> bool:
    """Put a parked output back where its stage's key is unchanged and its bytes are as recorded."""
    try:
        if entry.get("key") != key or digest_of(file_hashes(path)) != entry.get("digest"):
            return False
        os.replace(path, target)
        return True
    except OSError:
        return False


class _NotTheSame(Exception):
    pass


def reuse_from_sibling(stage, key: str, target: Path, log=log_stderr) -> dict | None:
    """Copy a finished output with the same cache key from another folder beside this one (e.g. m-416 for
    m-416-float16, whose first three stages are identical); verified by sha256 after the copy. Returns the
    manifest entry, or None where no sibling has it."""
    here = target.parent.resolve()
    for mf in sorted(here.parent.glob(f"*/{manifest_mod.FILENAME}")):
        other = mf.parent
        if other.resolve() == here:
            continue
        entry = (manifest_mod.load(other).get("stages") or {}).get(stage.NAME)
        source = other / stage.OUTPUT
        if not (isinstance(entry, dict) and entry.get("completed") and entry.get("key") == key and source.exists()):
            continue
        try:
            with staged_output(target) as tmp:
                if source.is_dir():
                    shutil.copytree(source, tmp)
                else:
                    shutil.copy2(source, tmp)
                if digest_of(file_hashes(tmp)) != entry.get("digest"):
                    raise _NotTheSame
        except (_NotTheSame, OSError):
            continue
        log(f"      same inputs as {other.name}/{stage.OUTPUT}: copied (sha256 checked)")
        return {**entry, "reused_from": other.name}
    return None


@contextmanager
def artifact_lock(artifact_dir: Path, log=log_stderr):
    """One conversion per artifact folder at a time (a dot-named lock file beside it; waits for the other)."""
    artifact_dir = Path(artifact_dir)
    artifact_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(artifact_dir.parent / f".{artifact_dir.name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another conversion into {artifact_dir} to finish ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_stages(source: ModelSource, options: ConvertOptions, artifact_dir: Path, force: bool = False,
               log=log_stderr, stages=STAGES) -> tuple[list[StageResult], manifest_mod.Manifest]:
    artifact_dir = Path(artifact_dir)
    created = not artifact_dir.exists()
    artifact_dir.mkdir(parents=True, exist_ok=True)
    for name in sweep(artifact_dir):
        log(f"removed leftover of an interrupted run: {name}")
    man = manifest_mod.Manifest(artifact_dir, [s.NAME for s in stages])
    man.update(name=artifact_dir.name, model=source.name, options=options.as_dict(),
               inputs=source.inputs_record(), signature=signature(source.cfg),
               versions=manifest_mod.versions())
    ctx = StageContext(source=source, options=options, artifact_dir=artifact_dir, log=log)
    results: list[StageResult] = []
    inputs = {"config_sha256": source.config_sha256, "weights": source.weights_id}
    parked: dict[str, tuple[Path, dict]] = {}   # later stages' outputs set aside while an earlier one rebuilds
    reused_from = None
    try:
        for i, stage in enumerate(stages, 1):
            target = artifact_dir / stage.OUTPUT
            parts = key_parts(stage, ctx, inputs)
            key = stage_key(stage=stage.NAME, **parts)
            entry = man.stage(stage.NAME)
            reason = "--force" if force else rebuild_reason(entry, key, parts, target)
            if reason and not force and stage.NAME in parked:
                path, old = parked.pop(stage.NAME)
                restored = unpark(path, old, key, target)
                remove(path.parent)
                if restored:   # the rebuilt input came out byte-identical: this output is still right
                    entry, reason = old, None
                    man.complete_stage(stage.NAME, entry)
                    man.save()
                else:
                    reason = "input changed"
            cached = reason is None
            log(f"[{i}/{len(stages)}] {stage.NAME} -> {stage.OUTPUT} " + ("(cached)" if cached else f"... ({reason})"))
            if cached:
                seconds = 0.0
            else:
                later_entries = {s.NAME: man.stage(s.NAME) for s in stages[i:]}
                man.forget_from(stage.NAME)   # first the manifest stops claiming them ...
                man.save()
                for later in stages[i:]:      # ... then their outputs go aside (dot-named), kept in case
                    if later_entries[later.NAME] and later.NAME not in parked:
                        path = park(artifact_dir / later.OUTPUT)
                        if path is not None:
                            parked[later.NAME] = (path, later_entries[later.NAME])
                for stale in stages[i - 1:]:  # nothing stale from here on may look finished
                    remove(artifact_dir / stale.OUTPUT)
                src = artifact_dir / stages[i - 2].OUTPUT if i > 1 else None
                t0 = time.perf_counter()
                entry = None if force else reuse_from_sibling(stage, key, target, log)
                if entry is not None:
                    reused_from = entry["reused_from"]
                else:
                    with staged_output(target) as tmp:
                        extras = stage.convert(src, tmp, ctx) or {}
                    hashes = file_hashes(target)
                    entry = {"output": stage.OUTPUT, "key": key, "key_parts": parts, "inputs": inputs,
                             "files": hashes, "digest": digest_of(hashes),
                             "seconds": round(time.perf_counter() - t0, 3),
                             "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extras}
                seconds = time.perf_counter() - t0
                man.complete_stage(stage.NAME, entry)
                man.save()
                log(f"      done in {seconds:.1f} s")
            ctx.extras[f"io_spec:{stage.NAME}"] = entry.get("io_spec")
            results.append(StageResult(stage.NAME, stage.OUTPUT, tree_size(target), seconds, cached,
                                       reused_from if not cached else None))
            reused_from = None
            inputs = {"input_digest": entry["digest"]}
    except BaseException:
        if created and not man.data.get("stages_completed"):
            remove(artifact_dir)   # a failed first run leaves no folder behind
        raise
    finally:
        for path, _ in parked.values():
            remove(path.parent)
    finish_manifest(man, results)
    return results, man


def finish_manifest(man: manifest_mod.Manifest, results: list[StageResult]) -> None:
    stages = man.data["stages"]
    onnx_entry = stages.get(stage_onnx.NAME, {})
    provenance = onnx_entry.get("weights") or {}
    files = {}
    for name in man.data.get("stages_completed", []):
        output = stages[name]["output"]
        for rel, digest in stages[name]["files"].items():
            files[output if rel == Path(output).name and not (man.dir / output).is_dir() else f"{output}/{rel}"] = digest
    man.update(weights=provenance.get("weights"), weights_provenance=provenance, files=files,
               patches={"torch": onnx_entry.get("patches", []),
                        "onnx": stages.get(stage_onnx_sim.NAME, {}).get("patches", [])},
               last_run={"stages": {r.name: {"cached": r.cached, "reused_from": r.reused_from,
                                             "seconds": round(r.seconds, 3)} for r in results}})
    man.save()


def optional_hook(module: str, function: str):
    """``module.function`` where both exist, else None (the module may not be written yet)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    fn = getattr(importlib.import_module(module), function, None)
    return fn if callable(fn) else None


def run_hooks(artifact_dir: Path, source: ModelSource, audit: bool, validate: bool, images=None, annotations=None,
              log=log_stderr) -> dict:
    done = {}
    plan = [("audit", audit, "validation.int64_audit", "audit_artifact_dir", {}),
            ("validation", validate, "validation.api", "validate_artifacts",
             {"images": images, "annotations": annotations})]
    for label, wanted, module, function, kwargs in plan:
        if not wanted:
            log(f"{label}: skipped (--no-{'audit' if label == 'audit' else 'validate'})")
            continue
        fn = optional_hook(module, function)
        if fn is None:
            log(f"{label}: skipped ({module}.{function} not available)")
            continue
        log(f"{label}: {module}.{function} ...")
        t0 = time.perf_counter()
        done[label] = {"result": fn(artifact_dir, source.cfg, **kwargs), "seconds": time.perf_counter() - t0}
    return done


def convert(source: ModelSource, options: ConvertOptions, out: Path | None = None, force: bool = False,
            audit: bool = True, validate: bool = True, images=None, annotations=None, log=log_stderr) -> RunResult:
    t0 = time.perf_counter()
    artifact_dir = Path(out) if out else default_artifact_dir(source, options)
    if source.checkpoint is None:
        log(f"WARNING: {source.name} has no checkpoint: weights: random (seed {source.seed}); detections are "
            f"meaningless, only the agreement between stages is")
    with artifact_lock(artifact_dir, log):   # held through the checks too: they read what the stages wrote
        results, man = run_stages(source, options, artifact_dir, force=force, log=log)
        seconds = time.perf_counter() - t0
        hooks = run_hooks(artifact_dir, source, audit, validate, images, annotations, log=log)
    return RunResult(artifact_dir, results, seconds, man.data, hooks)


def format_table(results: list[StageResult]) -> str:
    rows = [("stage", "output", "size", "seconds", "cached")]
    for r in results:
        rows.append((r.name, r.output, human_size(r.size), f"{r.seconds:.1f}", r.cached_label))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
