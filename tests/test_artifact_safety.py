"""A finished artifact folder is never destroyed (``converters.pipeline``, ``converters.staging``).

Starting from a copy of the session's good m-416 conversion (stages, manifest, audit, validation.json, report.md
with overall PASS, pictures): a checkpoint refused for any reason leaves the folder byte-identical, and a
``--force`` rebuild killed with SIGKILL in the middle of a stage leaves the old complete folder; the next run
removes what the kill left beside it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from contracts.paths import PROJECT_ROOT

PY = sys.executable
BAD_KINDS = ("empty", "truncated", "foreign-zip", "missing-key", "extra-key", "misshaped-key", "wrong-classes")


def folder_hashes(folder: Path) -> dict[str, str]:
    from contracts.hashing import sha256_file
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def convert(*args: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "commands", "convert", "--model", "m-416", "--out", str(out), *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


@pytest.fixture
def good_copy(converted_m416, tmp_path) -> Path:
    """A private copy of the session's converted m-416 folder (with its reports)."""
    copy = tmp_path / "artifacts" / "m-416"
    shutil.copytree(converted_m416, copy)
    for name in ("validation.json", "report.md", "audit.json", "pictures", "tfjs/model.json"):
        assert (copy / name).exists(), name
    return copy


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One refused checkpoint of each kind, made from the real m-416 checkpoint."""
    import torch
    import yaml

    from nanodet_ref.checkpoint import read_state_dict
    from nanodet_ref.config import load_config, resolve_checkpoint
    from nanodet_ref.model import build_model

    folder = tmp_path_factory.mktemp("bad-checkpoints")
    cfg = load_config("m-416")
    real = resolve_checkpoint(cfg, None)
    if real is None:
        pytest.skip("the m-416 checkpoint is in the shared folder, which is absent")
    sd = read_state_dict(real)
    out = {kind: folder / f"{kind}.pth" for kind in BAD_KINDS}
    out["empty"].write_bytes(b"")
    out["truncated"].write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    with zipfile.ZipFile(out["foreign-zip"], "w") as z:
        z.writestr("notes/readme.txt", "a zip archive, but not one torch wrote\n")
    first = next(iter(sd))
    torch.save({"state_dict": {k: v for k, v in sd.items() if k != first}}, out["missing-key"])
    torch.save({"state_dict": {**sd, "extra.thing": torch.zeros(1)}}, out["extra-key"])
    conv = next(k for k, v in sd.items() if v.ndim == 4)
    torch.save({"state_dict": {**sd, conv: torch.zeros(*sd[conv].shape[:-1], sd[conv].shape[-1] + 2)}},
               out["misshaped-key"])
    raw = cfg.raw
    raw["model"]["arch"]["head"]["num_classes"] = 20
    raw["class_names"] = [f"c{i}" for i in range(20)]
    (folder / "voc.yml").write_text(yaml.safe_dump(raw))
    torch.save({"state_dict": build_model(load_config(folder / "voc.yml")).state_dict()}, out["wrong-classes"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_refused_checkpoint_leaves_the_artifact_folder_byte_identical(good_copy, bad_checkpoints, kind):
    before = folder_hashes(good_copy)
    r = convert("--checkpoint", str(bad_checkpoints[kind]), out=good_copy)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{kind}.pth" in last and "Traceback" not in r.stderr, last
    assert folder_hashes(good_copy) == before            # stages, manifest, reports: not one byte changed
    assert leftovers(good_copy.parent) == []              # and nothing left beside it
    assert "[1/4]" not in r.stderr                         # refused before any stage started


@pytest.mark.slow
def test_a_killed_force_rebuild_leaves_the_old_folder_and_the_next_run_sweeps(good_copy):
    before = folder_hashes(good_copy)
    proc = subprocess.Popen([PY, "-m", "commands", "convert", "--model", "m-416", "--out", str(good_copy),
                             "--force", "--no-validate", "--no-audit"], cwd=PROJECT_ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    seen = []
    try:
        for line in proc.stderr:   # kill it in the middle of the SavedModel stage
            seen.append(line)
            if line.startswith("[3/4] saved_model"):
                time.sleep(2)
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -9, "".join(seen)[-2000:]
    assert folder_hashes(good_copy) == before             # the old complete folder, its PASS report true of it
    left = leftovers(good_copy.parent)
    assert left and all(name.startswith(".m-416.build-") for name in left), left   # the kill left its build

    r = convert("--no-validate", "--no-audit", out=good_copy)   # the next run: cached, and it sweeps
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"removed leftover of an interrupted run: {left[0]}" in r.stderr
    assert leftovers(good_copy.parent) == []
    after = folder_hashes(good_copy)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}   # same stages: the reports stay with them
    assert not [p for p in good_copy.rglob(".*")]           # no .old-* / .tmp-* inside either
