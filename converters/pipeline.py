"""The conversion pipeline: PyTorch -> ONNX -> simplified ONNX -> SavedModel -> TFJS, cached, and never destroying
a finished artifact folder.

Each stage has a cache key (its input hashes + options + package versions + the hash of the toolkit sources that
shape it). A run builds a whole new folder beside the artifact folder (``converters.staging``): a stage whose key
matches the old manifest and whose old output still has the recorded sha256 goes into the new folder unchanged
(hard links), another is copied from a sibling folder with the same key, the rest are built there. Then the
manifest, then the caller's checks (``post``: the convert command runs the int64 audit, then the validation)
write their reports in the new folder, and the new folder replaces the old one in one swap. Before anything is
built, the inputs are checked (the checkpoint is loaded strictly into the model). So a refused input, a failed
stage or a killed run leaves the old folder byte-identical, and reports always describe the stage files beside
them: the old reports go into the new folder only where every stage came out byte-identical.
"""
from __future__ import annotations

import fcntl
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from contracts.atomic import is_leftover, link_or_copy, remove, staged_output, sweep
from contracts.errors import UserError
from contracts.hashing import digest_of, file_hashes, source_hash, stage_key
from contracts.manifest import FILENAME as MANIFEST, Manifest, ManifestWriter, package_version, versions
from contracts.paths import PROJECT_ROOT, artifacts_dir
from contracts.signature import signature

from . import stage_onnx, stage_onnx_sim, stage_saved_model, stage_tfjs, staging
from .context import StageContext, log_stderr
from .options import DEFAULT_OPSET, ConvertOptions, artifact_name
from .sources import ModelSource, display_path

STAGES = (stage_onnx, stage_onnx_sim, stage_saved_model, stage_tfjs)
STAGE_NAMES = [s.NAME for s in STAGES]
# What the audit, validate and check write into an artifact folder: they describe its stage files, so they go
# into a new build only where every stage came out byte-identical. Other entries (a user's own) always go along.
REPORTS = ("validation.json", "report.md", "pictures", "check.json", "check.md", "audit.json", "validations")


@dataclass
class StageResult:
    name: str
    output: str
    size: int
    seconds: float
    cached: bool
    reused_from: str | None = None   # copied from a sibling artifact folder with the same stage key
    built: str | None = None         # when the output was built (this run, or the run that built a cached one)

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


@dataclass
class Build:
    """One run's state: where it builds, the old folder's manifest, what it decided so far."""
    artifact_dir: Path               # the folder that is replaced at the end
    folder: Path                     # the new folder being built (inside a dot-named container beside it)
    old: Manifest                    # the old folder's manifest (empty where none)
    manifest: ManifestWriter
    ctx: StageContext
    force: bool
    log: callable
    results: list[StageResult] = field(default_factory=list)


def default_artifact_dir(source: ModelSource, options: ConvertOptions) -> Path:
    return artifacts_dir() / artifact_name(source.name, options, DEFAULT_OPSET)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def tree_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def key_parts(stage, ctx: StageContext, inputs: dict) -> dict:
    return {"inputs": inputs, "options": stage.key_options(ctx),
            "versions": {p: package_version(p) for p in stage.PACKAGES},
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


class _NotTheSame(Exception):
    pass


def reuse_from_sibling(stage, key: str, artifact_dir: Path, target: Path, log=log_stderr) -> dict | None:
    """Copy a finished output with the same cache key from another artifact folder beside ``artifact_dir`` (e.g.
    m-416 for m-416-float16, whose first three stages are identical) to ``target``; verified by sha256 after the
    copy. Dot-named folders (builds in progress, leftovers) are never used. Returns (manifest entry, sibling name)
    or None where no sibling has it."""
    here = Path(artifact_dir).resolve()
    for mf in sorted(here.parent.glob(f"*/{MANIFEST}")):
        other = mf.parent
        if other.name.startswith(".") or other.resolve() == here:
            continue
        entry = Manifest.load(other, strict=False).stage(stage.NAME)
        source = other / stage.OUTPUT
        if not (entry and entry.get("key") == key and source.exists()):
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
        return entry, other.name
    return None


@contextmanager
def artifact_lock(artifact_dir: Path, log=log_stderr):
    """One writer per artifact folder at a time (a dot-named lock file beside it; waits for the other). Holding it,
    repairs what an interrupted run left beside the folder (``staging.recover``) and in it (``atomic.sweep``)."""
    artifact_dir = Path(artifact_dir)
    artifact_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(artifact_dir.parent / f".{artifact_dir.name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another conversion into {artifact_dir} to finish ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            for note in staging.recover(artifact_dir):
                log(note)
            if Manifest.is_ours(artifact_dir):   # never sweep a folder that is not ours (a mistyped --out)
                for name in sweep(artifact_dir):   # e.g. a promotion by `accept` cut off half-way
                    log(f"removed leftover of an interrupted run: {artifact_dir.name}/{name}")
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- inputs, checked before anything is built ------------------------------------------------------------------

def first_stage_cached(stages, source: ModelSource, options: ConvertOptions, artifact_dir: Path, old: Manifest,
                       force: bool) -> bool:
    """Whether the first stage's output in the old folder is still right for these inputs."""
    if force or not stages:
        return False
    ctx = StageContext(source=source, options=options, artifact_dir=artifact_dir)
    parts = key_parts(stages[0], ctx, source_inputs(source))
    key = stage_key(stage=stages[0].NAME, **parts)
    return rebuild_reason(old.stage(stages[0].NAME), key, parts, artifact_dir / stages[0].OUTPUT) is None


def check_checkpoint(source: ModelSource, options: ConvertOptions, artifact_dir: Path, log=log_stderr) -> None:
    """Load the checkpoint strictly into the model, as the ONNX stage will: a file that is empty, truncated, not
    a PyTorch checkpoint or does not match the config (missing / unexpected / mis-shaped keys, other class count)
    is refused here with ``error: <file>: ...``, before the artifact folder is touched."""
    if source.checkpoint is None:
        return   # seeded random weights: nothing to check
    ctx = StageContext(source=source, options=options, artifact_dir=artifact_dir, log=log)
    stage_onnx.build_weighted_model(ctx)


def check_folder(artifact_dir: Path) -> None:
    """The folder to (re)build is new, empty or an artifact folder (it has a manifest): a run replaces the whole
    folder, so it must not be, by a mistyped ``--out``, some other folder."""
    if not artifact_dir.exists():
        return
    if not artifact_dir.is_dir():
        raise UserError(f"{artifact_dir}: exists and is not a folder")
    if Manifest.is_ours(artifact_dir):
        return
    if [p for p in artifact_dir.iterdir() if not is_leftover(p.name)]:
        why = f"its {MANIFEST} was not written by this toolkit" if (artifact_dir / MANIFEST).exists() \
            else f"no {MANIFEST}"
        raise UserError(f"{artifact_dir}: not an artifact folder ({why}) and not empty: give a new or empty folder")


def source_inputs(source: ModelSource) -> dict:
    return {"config_sha256": source.config_sha256, "weights": source.weights_id, **source.size_inputs()}


# -- one stage -----------------------------------------------------------------------------------------------

def place_stage(run: Build, index: int, stage, inputs: dict) -> dict:
    """Put ``stage``'s output into the new folder (unchanged from the old folder, copied from a sibling, or built);
    records it in the manifest and the results; returns its manifest entry."""
    ctx, log, n = run.ctx, run.log, len(run.manifest.order)
    parts = key_parts(stage, ctx, inputs)
    key = stage_key(stage=stage.NAME, **parts)
    entry = run.old.stage(stage.NAME)
    reason = "--force" if run.force else rebuild_reason(entry, key, parts, run.artifact_dir / stage.OUTPUT)
    log(f"[{index}/{n}] {stage.NAME} -> {stage.OUTPUT} " + ("(cached)" if reason is None else f"... ({reason})"))
    target = run.folder / stage.OUTPUT
    t0 = time.perf_counter()
    if reason is None:   # still right: the same bytes go into the new folder (hard links)
        link_or_copy(run.artifact_dir / stage.OUTPUT, target)
        result = StageResult(stage.NAME, stage.OUTPUT, tree_size(target), 0.0, True,
                             built=run.old.built_time(stage.NAME))
    else:
        entry, reused_from = build_stage(run, stage, key, parts, inputs, target)
        seconds = time.perf_counter() - t0
        log(f"      done in {seconds:.1f} s")
        result = StageResult(stage.NAME, stage.OUTPUT, tree_size(target), seconds, False, reused_from, now())
    run.manifest.complete_stage(stage.NAME, entry)
    run.results.append(result)
    ctx.extras[f"io_spec:{stage.NAME}"] = entry.get("io_spec")
    return entry


def build_stage(run: Build, stage, key: str, parts: dict, inputs: dict, target: Path) -> tuple[dict, str | None]:
    """Copy the output from a sibling folder with the same key, else convert; returns (entry, sibling or None)."""
    if not run.force:
        found = reuse_from_sibling(stage, key, run.artifact_dir, target, run.log)
        if found is not None:
            return found
    previous = run.results[-1].output if run.results else None
    src = run.folder / previous if previous else None
    extras = stage.convert(src, target, run.ctx) or {}
    if not target.exists():
        raise RuntimeError(f"stage {stage.NAME} wrote no {stage.OUTPUT}")
    hashes = file_hashes(target)
    return {"output": stage.OUTPUT, "key": key, "key_parts": parts, "inputs": inputs, "files": hashes,
            "digest": digest_of(hashes), **extras}, None


# -- reports and the manifest --------------------------------------------------------------------------------

def same_stage_files(old: Manifest, man: ManifestWriter) -> bool:
    """Whether the old folder was complete with exactly the stage files the new one has."""
    return old.complete and all(old.stage_digest(n) == man.stage_digest(n) for n in man.order)


def carry_entries(run: Build, reports_valid: bool) -> list[str]:
    """Put the old folder's other entries into the new one: the reports only where ``reports_valid`` (they
    describe these very stage files), a user's own files always (leftovers of interrupted writes never).
    Returns the reports left behind."""
    outputs = {Path(s.OUTPUT).parts[0] for s in STAGES} | {r.output.split("/")[0] for r in run.results}
    dropped = []
    if not run.artifact_dir.is_dir():
        return dropped
    for entry in sorted(run.artifact_dir.iterdir()):
        name = entry.name
        if is_leftover(name) or name in outputs or name == MANIFEST:
            continue
        if name in REPORTS and not reports_valid:
            dropped.append(name)
            continue
        link_or_copy(entry, run.folder / name)
    return dropped


def drop_reports(folder: Path) -> None:
    for name in REPORTS:
        remove(Path(folder) / name)


def finish_manifest(man: ManifestWriter, results: list[StageResult], run_facts: dict) -> None:
    stages = man.data["stages"]
    onnx_entry = stages.get(stage_onnx.NAME, {})
    provenance = onnx_entry.get("weights") or {}
    files = {}
    for name in man.data.get("stages_completed", []):
        output = stages[name]["output"]
        single = not (man.dir / output).is_dir()
        for rel, digest in stages[name]["files"].items():
            files[output if single and rel == Path(output).name else f"{output}/{rel}"] = digest
    man.update(weights=provenance.get("weights"), weights_provenance=provenance, files=files,
               patches={"torch": onnx_entry.get("patches", []),
                        "onnx": stages.get(stage_onnx_sim.NAME, {}).get("patches", [])},
               run={**run_facts, "stages": {r.name: {"cached": r.cached, "reused_from": r.reused_from,
                                                     "seconds": round(r.seconds, 3), "built": r.built}
                                            for r in results}})
    man.save()


# -- the run -------------------------------------------------------------------------------------------------

def build_artifact(source: ModelSource, options: ConvertOptions, artifact_dir: Path, force: bool = False,
                   log=log_stderr, stages=STAGES, post=None, stage_hooks: dict | None = None
                   ) -> tuple[list[StageResult], ManifestWriter, dict]:
    """Build the artifact folder anew beside the old one and swap it in (module docstring).

    ``post(folder) -> dict`` runs on the complete new folder before the swap (the audit and the validation).
    Where it raises: with the same stage files as before the old folder stays as it is; with new stage files
    these land without any report (the old reports describe other files, the new ones are incomplete).
    Returns (stage results, manifest, what ``post`` returned).
    """
    artifact_dir = Path(artifact_dir)
    for note in staging.recover(artifact_dir):
        log(note)
    check_folder(artifact_dir)
    old = Manifest.load(artifact_dir, strict=False)
    if stages and stages[0] is stage_onnx and not first_stage_cached(stages, source, options, artifact_dir, old,
                                                                      force):
        check_checkpoint(source, options, artifact_dir, log)
    started, t0 = now(), time.perf_counter()
    with staging.build_folder(artifact_dir) as folder:
        man = ManifestWriter(folder, [s.NAME for s in stages])
        man.update(name=artifact_name(source.name, options, DEFAULT_OPSET), model=source.name,
                   options=options.as_dict(), inputs=source.inputs_record(),
                   signature=signature(source.cfg, options.layout),
                   versions=versions())
        run = Build(artifact_dir, folder, old, man,
                    StageContext(source=source, options=options, artifact_dir=folder, log=log,
                                 hooks=stage_hooks or {}),
                    force, log)
        inputs = source_inputs(source)
        for i, stage in enumerate(stages, 1):
            inputs = {"input_digest": place_stage(run, i, stage, inputs)["digest"]}
        unchanged = same_stage_files(old, man)
        dropped = carry_entries(run, reports_valid=unchanged)
        if dropped:
            log(f"reports of the previous build not kept (they describe other stage files): {', '.join(dropped)}")
        finish_manifest(man, run.results, {"folder": display_path(artifact_dir), "started": started,
                                           "finished": now(), "seconds": round(time.perf_counter() - t0, 3)})
        try:
            hooks = post(folder) if post is not None else {}
        except Exception:
            if not unchanged:
                drop_reports(folder)
                staging.swap_into_place(folder, artifact_dir)
                log(f"{artifact_dir}: the new stages are in place without reports (a check after them failed)")
            raise
        staging.swap_into_place(folder, artifact_dir)
    man.dir = artifact_dir
    return run.results, man, hooks


def run_stages(source: ModelSource, options: ConvertOptions, artifact_dir: Path, force: bool = False,
               log=log_stderr, stages=STAGES) -> tuple[list[StageResult], ManifestWriter]:
    """Build the stages (no hooks); returns (stage results, manifest)."""
    results, man, _ = build_artifact(source, options, artifact_dir, force, log, stages)
    return results, man


def convert(source: ModelSource, options: ConvertOptions, out: Path | None = None, force: bool = False,
            post=None, log=log_stderr, stages=STAGES, stage_hooks: dict | None = None) -> RunResult:
    """Build (or reuse) the artifact folder of ``source`` under ``options``. ``post(folder) -> dict`` runs on the new
    folder before it replaces the old one (the caller's checks: the int64 audit, the validation); its answer is
    ``RunResult.hooks``. ``stages``: the first few only (``--until``). ``stage_hooks``: lent to the
    stages (``StageContext.hooks``: the auto quantization search of ``--quantize auto``)."""
    t0 = time.perf_counter()
    artifact_dir = Path(out) if out else default_artifact_dir(source, options)
    if source.checkpoint is None:
        log(f"WARNING: {source.name} has no checkpoint: weights: random (seed {source.seed}); detections are "
            f"meaningless, only the agreement between stages is")
    with artifact_lock(artifact_dir, log):
        results, man, hooks = build_artifact(source, options, artifact_dir, force=force, log=log, post=post,
                                             stages=stages, stage_hooks=stage_hooks)
    seconds = man.data["run"]["seconds"] if "run" in man.data else time.perf_counter() - t0
    return RunResult(artifact_dir, results, seconds, man.data, hooks)
