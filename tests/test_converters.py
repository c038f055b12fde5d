"""Tests of the converters: options, naming, cache keys, atomic stages, user errors, and one real conversion.

The pipeline tests drive ``run_stages`` with small stages that write real files (the pipeline code under test is
the real one); the end-to-end test converts m-416 with the real toolchain into a temp folder, checks the
artifacts, the SavedModel against PyTorch on a real image, and that a re-run is fully cached and fast.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from contracts import atomic
from contracts.signature import output_names
from converters import pipeline
from converters.options import ConvertOptions, artifact_name, check_opset
from converters.sources import resolve

PY = sys.executable


def run_cli(*args, env=None, timeout=900):
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    return subprocess.run([PY, "-m", "converters.cli", "convert", *args], cwd=PROJECT_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# --- options and naming -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [10, 11, 13, 17, "12"])
def test_supported_opsets(opset):
    assert check_opset(opset) == int(opset)


@pytest.mark.parametrize("opset", [9, 18, 0, -1, "x", "11.5", None, True])
def test_unsupported_opset_is_a_user_error(opset):
    with pytest.raises(UserError, match=r"unsupported opset .* \(supported: 10-17\)"):
        check_opset(opset)


def test_unsupported_opset_message_exact():
    with pytest.raises(UserError) as exc:
        ConvertOptions(opset=18)
    assert str(exc.value) == "unsupported opset 18 (supported: 10-17)"


@pytest.mark.parametrize("kwargs, name", [
    ({}, "m-416"),
    ({"opset": 11}, "m-416-opset11"),
    ({"backend": "onnx2tf"}, "m-416-onnx2tf"),
    ({"quantize": "float16"}, "m-416-float16"),
    ({"quantize": "uint8"}, "m-416-uint8"),
    ({"patches": "none"}, "m-416-nopatches"),
    ({"opset": 13, "backend": "onnx2tf", "quantize": "float16"}, "m-416-opset13-onnx2tf-float16"),
])
def test_artifact_name(kwargs, name):
    assert artifact_name("m-416", ConvertOptions(**kwargs)) == name


@pytest.mark.parametrize("kwargs", [{"quantize": "int4"}, {"backend": "tflite"}, {"patches": "some"}])
def test_bad_choices_are_user_errors(kwargs):
    with pytest.raises(UserError):
        ConvertOptions(**kwargs)


def test_the_reference_model_names_its_outputs_by_the_one_signature():
    """contracts.signature is the one definition of the signature: the PyTorch reference names its outputs with it
    (there is no twin to keep equal), cls before dis, in stride order."""
    from contracts.signature import INPUT_NAME
    from nanodet_ref.config import load_config
    from nanodet_ref.model import build_model
    assert INPUT_NAME == "input"
    assert output_names([8, 16, 32]) == ["cls_pred_stride_8", "cls_pred_stride_16", "cls_pred_stride_32",
                                         "dis_pred_stride_8", "dis_pred_stride_16", "dis_pred_stride_32"]
    cfg = load_config("m-416")
    assert build_model(cfg).output_names == output_names(cfg.strides)


# --- a small real pipeline: stages that write files -------------------------------------------------------------

def make_stage(name, output, body, log=None, option="opset"):
    """A stage with the standard shape; ``body(src, dst)`` writes ``dst``; its key sees one option."""
    def convert(src, dst, ctx):
        if log is not None:
            log.append(name)
        body(src, dst)
        return {"io_spec": None}
    return SimpleNamespace(NAME=name, OUTPUT=output, PACKAGES=("numpy",), code_files=lambda ctx: [],
                           key_options=lambda ctx: {option: getattr(ctx.options, option)}, convert=convert)


def copy_upper(src, dst):
    dst.write_text(Path(src).read_text().upper())


def make_source(tmp_path, weights=b"w1"):
    src = resolve(model="m-416")
    src.checkpoint_sha256 = "sha-" + weights.decode()
    src.checkpoint = tmp_path / "fake.ckpt"
    return src


def toy_stages(log, first_text="hello", fail_second=False):
    def first(src, dst):
        dst.write_text(first_text)

    def second(src, dst):
        dst.mkdir()
        (dst / "part.txt").write_text(Path(src).read_text() + "!")
        if fail_second:
            raise RuntimeError("boom in the middle of writing")

    def third(src, dst):
        dst.write_text((Path(src) / "part.txt").read_text().upper())
    return (make_stage("one", "one.txt", first, log), make_stage("two", "two_dir", second, log),
            make_stage("three", "three.txt", third, log, option="quantize"))


def quiet(msg):
    pass


def test_second_run_is_cached_and_force_rebuilds(tmp_path):
    art, log = tmp_path / "art", []
    src, opts = make_source(tmp_path), ConvertOptions()
    res, man = pipeline.run_stages(src, opts, art, stages=toy_stages(log), log=quiet)
    assert [r.cached for r in res] == [False, False, False] and log == ["one", "two", "three"]
    assert (art / "three.txt").read_text() == "HELLO!"
    assert man.data["complete"] and man.data["stages_completed"] == ["one", "two", "three"]
    on_disk = json.loads((art / "manifest.json").read_text())
    assert on_disk["stages"]["two"]["files"] == {"part.txt": atomic_sha(art / "two_dir" / "part.txt")}

    log.clear()
    res, _ = pipeline.run_stages(src, opts, art, stages=toy_stages(log), log=quiet)
    assert [r.cached for r in res] == [True, True, True] and log == []

    res, _ = pipeline.run_stages(src, opts, art, stages=toy_stages(log), log=quiet, force=True)
    assert [r.cached for r in res] == [False, False, False] and log == ["one", "two", "three"]


def atomic_sha(path):
    from contracts.hashing import sha256_file
    return sha256_file(path)


def test_changed_input_or_option_or_tampered_output_rebuilds(tmp_path):
    art, log = tmp_path / "art", []
    opts = ConvertOptions()
    pipeline.run_stages(make_source(tmp_path), opts, art, stages=toy_stages(log), log=quiet)

    log.clear()   # other weights: everything from stage one
    res, _ = pipeline.run_stages(make_source(tmp_path, b"w2"), opts, art, stages=toy_stages(log, "bye"), log=quiet)
    assert log == ["one", "two", "three"] and (art / "three.txt").read_text() == "BYE!"

    log.clear()   # an option only the last stage's key sees
    res, _ = pipeline.run_stages(make_source(tmp_path, b"w2"), ConvertOptions(quantize="float16"), art,
                                 stages=toy_stages(log, "bye"), log=quiet)
    assert log == ["three"]

    log.clear()   # an option stages one and two see; their outputs come out the same, so three is kept
    res, _ = pipeline.run_stages(make_source(tmp_path, b"w2"), ConvertOptions(opset=11, quantize="float16"), art,
                                 stages=toy_stages(log, "bye"), log=quiet)
    assert log == ["one", "two"] and [r.cached for r in res] == [False, False, True]
    assert (art / "three.txt").read_text() == "BYE!" and not [p for p in art.iterdir() if p.name.startswith(".")]

    log.clear()   # someone edits a finished output: that stage is rebuilt (and three, fed the same, is kept)
    (art / "two_dir" / "part.txt").write_text("tampered")
    res, _ = pipeline.run_stages(make_source(tmp_path, b"w2"), ConvertOptions(opset=11, quantize="float16"), art,
                                 stages=toy_stages(log, "bye"), log=quiet)
    assert log == ["two"] and [r.cached for r in res] == [True, False, True]
    assert (art / "two_dir" / "part.txt").read_text() == "bye!" and (art / "three.txt").read_text() == "BYE!"


def test_identical_stages_are_copied_from_a_sibling_folder(tmp_path):
    log = []
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), tmp_path / "m", stages=toy_stages(log), log=quiet)
    log.clear()   # same model, another option that only the last stage sees: the first two are copied
    stages = toy_stages(log)
    res, man = pipeline.run_stages(make_source(tmp_path), ConvertOptions(quantize="float16"), tmp_path / "m-float16",
                                   stages=stages, log=quiet)
    assert log == ["three"]
    assert [r.reused_from for r in res] == ["m", "m", None]
    assert (tmp_path / "m-float16" / "two_dir" / "part.txt").read_text() == "hello!"
    assert man.data["run"]["stages"]["one"]["reused_from"] == "m"   # a run fact: in the run block only
    assert "reused_from" not in man.data["stages"]["one"]

    log.clear()   # a sibling whose output no longer matches its manifest is not trusted
    (tmp_path / "m" / "one.txt").write_text("tampered")
    res, _ = pipeline.run_stages(make_source(tmp_path), ConvertOptions(quantize="uint8"), tmp_path / "m-uint8",
                                 stages=toy_stages(log), log=quiet)
    assert [r.reused_from for r in res] == ["m-float16", "m", None]   # stage one only from the intact copy

    log.clear()
    for name in ("m-float16", "m-uint8"):
        (tmp_path / name / "one.txt").write_text("tampered")
    res, _ = pipeline.run_stages(make_source(tmp_path), ConvertOptions(), tmp_path / "m-other",
                                 stages=toy_stages(log), log=quiet)
    assert log[0] == "one" and (tmp_path / "m-other" / "one.txt").read_text() == "hello"


def test_cache_key_depends_on_every_part(tmp_path):
    from contracts.hashing import stage_key
    base = dict(stage="onnx", inputs={"a": 1}, options={"opset": 10}, versions={"torch": "2.13.0"}, code="c1")
    key = stage_key(**base)
    assert key == stage_key(**dict(base))
    for field, other in (("stage", "tfjs"), ("inputs", {"a": 2}), ("options", {"opset": 11}),
                         ("versions", {"torch": "2.14.0"}), ("code", "c2")):
        assert stage_key(**{**base, field: other}) != key, field


def test_real_stage_keys_follow_options_and_sources(tmp_path):
    from converters import stage_onnx, stage_tfjs
    from converters.context import StageContext
    src = resolve(model="m-416")
    ctx = lambda **kw: StageContext(source=src, options=ConvertOptions(**kw), artifact_dir=tmp_path)
    inputs = {"config_sha256": src.config_sha256, "weights": src.weights_id}
    k10 = pipeline.compute_key(stage_onnx, ctx(), inputs)
    assert k10 == pipeline.compute_key(stage_onnx, ctx(), inputs)
    assert k10 != pipeline.compute_key(stage_onnx, ctx(opset=11), inputs)
    assert k10 != pipeline.compute_key(stage_onnx, ctx(patches="none"), inputs)
    assert k10 != pipeline.compute_key(stage_onnx, ctx(), {**inputs, "weights": "random (seed 12345)"})
    assert k10 == pipeline.compute_key(stage_onnx, ctx(quantize="float16"), inputs)   # not its option
    assert (pipeline.compute_key(stage_tfjs, ctx(), {"input_digest": "x"})
            != pipeline.compute_key(stage_tfjs, ctx(quantize="uint8"), {"input_digest": "x"}))
    files = [p.relative_to(PROJECT_ROOT).as_posix() for p in stage_onnx.code_files(ctx())]
    assert "nanodet_ref/model.py" in files and "converters/stage_onnx.py" in files


# --- atomic writing -----------------------------------------------------------------------------------------------

def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (dot files included), by relative path."""
    from contracts.hashing import sha256_file
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_failing_stage_leaves_the_old_folder_as_it_was(tmp_path):
    art, log = tmp_path / "art", []
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet)
    (art / "report.md").write_text("overall: **PASS**\n")   # a report describing these stage files
    before = folder_hashes(art)

    log.clear()   # new weights, and stage two dies half-way through writing its folder
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run_stages(make_source(tmp_path, b"w2"), ConvertOptions(), art,
                            stages=toy_stages(log, "new", fail_second=True), log=quiet)
    assert log == ["one", "two"]
    assert folder_hashes(art) == before                          # old stages, their manifest and report: intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]   # the abandoned build is gone

    log.clear()   # the same inputs again, now working: the new stages replace the old ones, the report goes
    res, man = pipeline.run_stages(make_source(tmp_path, b"w2"), ConvertOptions(), art,
                                   stages=toy_stages(log, "new"), log=quiet)
    assert log == ["one", "two", "three"] and (art / "three.txt").read_text() == "NEW!"
    assert sorted(p.name for p in art.iterdir()) == ["manifest.json", "one.txt", "three.txt", "two_dir"]
    assert man.data["complete"] and man.data["stages_completed"] == ["one", "two", "three"]


def test_failing_first_run_removes_the_folder(tmp_path):
    art = tmp_path / "fresh"

    def explode(src, dst):
        dst.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art,
                            stages=(make_stage("one", "one.txt", explode),), log=quiet)
    assert not art.exists()


def without_manifest(hashes: dict) -> dict:
    return {k: v for k, v in hashes.items() if k != "manifest.json"}


def plant_reports(art: Path) -> None:
    """What the audit / validate / check leave in a folder (their content does not matter here), and a user file."""
    (art / "report.md").write_text("- overall: **PASS**\n")
    (art / "validations" / "other").mkdir(parents=True)
    (art / "validations" / "other" / "validation.json").write_text('{"pass": true}\n')
    (art / "notes.txt").write_text("my own notes\n")
    (art / ".keep").write_text("")


def test_reports_stay_only_with_the_stage_files_they_describe(tmp_path):
    art, log = tmp_path / "art", []
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet)
    plant_reports(art)
    before = without_manifest(folder_hashes(art))

    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet)
    assert without_manifest(folder_hashes(art)) == before              # cached: the same stage files, reports stay
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet, force=True)
    assert without_manifest(folder_hashes(art)) == before              # rebuilt byte-identical: they still hold

    pipeline.run_stages(make_source(tmp_path, b"w2"), ConvertOptions(), art, stages=toy_stages(log, "new"),
                        log=quiet)
    assert (art / "three.txt").read_text() == "NEW!"
    assert not (art / "report.md").exists() and not (art / "validations").exists()   # they described "hello"
    assert (art / "notes.txt").read_text() == "my own notes\n"          # not ours: kept
    assert (art / ".keep").exists()


def test_a_folder_that_is_no_artifact_folder_is_refused_untouched(tmp_path):
    """A run replaces the whole folder: --out naming some other, non-empty folder is refused (an empty one is fine)."""
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not an artifact folder .* not empty"):
        pipeline.run_stages(make_source(tmp_path), ConvertOptions(), other, stages=toy_stages([]), log=quiet)
    assert [p.name for p in tmp_path.iterdir()] == ["photos"] and [p.name for p in other.iterdir()] == ["holiday.jpg"]
    (tmp_path / "empty").mkdir()
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), tmp_path / "empty", stages=toy_stages([]), log=quiet)
    assert (tmp_path / "empty" / "three.txt").read_text() == "HELLO!"


def test_a_failing_check_after_the_stages(tmp_path):
    """The hooks (audit, validation) run in the new folder before it replaces the old one. Where one fails: with
    the same stage files the old folder stays as it was; with new ones these land without any report."""
    art, log = tmp_path / "art", []
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet)
    plant_reports(art)
    before = folder_hashes(art)

    def crash(folder):
        (folder / "validation.json").write_text('{"pass": true, "half": "written"}')
        raise RuntimeError("validation crashed")

    with pytest.raises(RuntimeError, match="validation crashed"):
        pipeline.build_artifact(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet,
                                post=crash)
    assert folder_hashes(art) == before

    def interrupted(folder):
        (folder / "validation.json").write_text('{"pass": true, "half": "written"}')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):   # Ctrl-C during the checks of new stages: the old folder stays
        pipeline.build_artifact(make_source(tmp_path, b"w2"), ConvertOptions(), art,
                                stages=toy_stages(log, "new"), log=quiet, post=interrupted)
    assert folder_hashes(art) == before

    with pytest.raises(RuntimeError, match="validation crashed"):
        pipeline.build_artifact(make_source(tmp_path, b"w2"), ConvertOptions(), art,
                                stages=toy_stages(log, "new"), log=quiet, post=crash)
    assert sorted(p.name for p in art.iterdir()) == [".keep", "manifest.json", "notes.txt", "one.txt",
                                                     "three.txt", "two_dir"]
    assert (art / "three.txt").read_text() == "NEW!"
    data = json.loads((art / "manifest.json").read_text())
    assert data["complete"] and data["stages"]["one"]["inputs"]["weights"] == "sha256:sha-w2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_dot_named_folders_are_never_siblings_to_copy_from(tmp_path):
    log = []
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), tmp_path / "m", stages=toy_stages(log), log=quiet)
    (tmp_path / "m").rename(tmp_path / ".m.build-leftover")   # e.g. what a killed run left, or a hidden copy
    log.clear()
    res, _ = pipeline.run_stages(make_source(tmp_path), ConvertOptions(quantize="float16"), tmp_path / "m-float16",
                                 stages=toy_stages(log), log=quiet)
    assert log == ["one", "two", "three"] and [r.reused_from for r in res] == [None, None, None]


def test_a_swap_cut_off_between_its_two_renames_is_completed_by_the_next_run(tmp_path):
    """A run killed after it moved the old folder aside and before it moved the new one in: the folder is absent,
    the complete new build waits in the container; the next run puts it in place and finds every stage cached."""
    from converters import staging

    art, log = tmp_path / "art", []
    pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log), log=quiet)
    build = tmp_path / ".art.build-killed" / "art"
    shutil.copytree(art, build)
    staging.set_aside(build, art)          # the first half of staging.swap_into_place, then the process died
    assert not art.exists()
    notes, log = [], []
    res, _ = pipeline.run_stages(make_source(tmp_path), ConvertOptions(), art, stages=toy_stages(log),
                                 log=notes.append)
    assert notes[0].startswith("completed the swap of an interrupted run")
    assert log == [] and all(r.cached for r in res) and (art / "three.txt").read_text() == "HELLO!"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]

    leftover = tmp_path / ".art.build-abandoned" / "art"   # a build killed before it was complete: removed
    leftover.mkdir(parents=True)
    (leftover / "one.txt").write_text("half")
    assert staging.recover(art) == ["removed leftover of an interrupted run: .art.build-abandoned"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_staged_output_and_sweep(tmp_path):
    target = tmp_path / "out"
    with atomic.staged_output(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
        assert not target.exists() and tmp.parent.name.startswith(".out.tmp-")
    assert (target / "a").read_text() == "1"
    with pytest.raises(ValueError):
        with atomic.staged_output(target) as tmp:
            tmp.mkdir()
            (tmp / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a"]          # the old complete folder is untouched
    with atomic.staged_output(target) as tmp:
        tmp.mkdir()
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]          # replaced as a whole
    (tmp_path / ".x.tmp-123").mkdir()                                  # what a killed run leaves
    (tmp_path / ".y.old-9").write_text("")
    assert sorted(atomic.sweep(tmp_path)) == [".x.tmp-123", ".y.old-9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_optional_hooks_are_found_only_where_they_exist():
    assert pipeline.optional_hook("validation.no_such_module_here", "validate_artifacts") is None
    assert pipeline.optional_hook("json", "no_such_function") is None
    assert pipeline.optional_hook("json", "dumps") is not None


# --- user errors --------------------------------------------------------------------------------------------------

def test_unknown_model():
    with pytest.raises(UserError, match="unknown MODEL 'm-999'"):
        resolve(model="m-999")
    r = run_cli("--model", "m-999", "--no-validate")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown MODEL 'm-999'")
    assert "Traceback" not in r.stderr


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="checkpoint file not found"):
        resolve(model="m-416", checkpoint=tmp_path / "nope.pth")


def test_unsupported_opset_cli(tmp_path):
    r = run_cli("--model", "m-416", "--opset", "9", "--out", str(tmp_path / "a"), "--no-validate")
    assert r.returncode == 2 and r.stderr.strip() == "error: unsupported opset 9 (supported: 10-17)"
    assert not (tmp_path / "a").exists()


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 this is not a real zip archive" * 10)
    out = tmp_path / "out"
    r = run_cli("--model", "m-416", "--checkpoint", str(bad), "--out", str(out), "--no-validate", "--no-audit")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "broken.pth" in last and "Traceback" not in r.stderr
    assert not out.exists()


def test_mismatched_checkpoint(tmp_path):
    import torch
    from nanodet_ref.config import load_config
    from nanodet_ref.model import build_model
    ckpt = tmp_path / "m416-as-g.pth"
    torch.save({"state_dict": build_model(load_config("m-416")).state_dict()}, ckpt)
    out = tmp_path / "out"
    r = run_cli("--model", "g-416", "--checkpoint", str(ckpt), "--out", str(out), "--no-validate", "--no-audit")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "does not match config g-416" in last
    assert not out.exists()


def test_node_missing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "out"
    r = run_cli("--model", "m-416", "--out", str(out), env={"PATH": str(empty)})
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: node (Node.js) not found on PATH: install Node.js >= 20.9 (validation and "
                                "the int64 audit run the TFJS model in Node; --no-validate --no-audit converts "
                                "without it)")
    assert not out.exists()


# --- the one real conversion --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converted(conversion_m416):
    """The session's one m-416 conversion (tests/conftest.py), with audit and validation."""
    assert conversion_m416.returncode == 0, conversion_m416.stderr[-3000:]
    return SimpleNamespace(dir=conversion_m416.artifact_dir, seconds=conversion_m416.seconds,
                           stdout=conversion_m416.stdout, stderr=conversion_m416.stderr)


@pytest.mark.slow
def test_end_to_end_m416_then_cached(converted):
    art = converted.dir
    for rel in ("model.onnx", "model.sim.onnx", "saved_model/saved_model.pb", "tfjs/model.json", "manifest.json"):
        assert (art / rel).is_file(), rel
    assert list((art / "tfjs").glob("group*-shard*of*.bin"))
    assert not [p for p in art.iterdir() if p.name.startswith(".")]
    m = json.loads((art / "manifest.json").read_text())
    assert m["complete"] and m["stages_completed"] == ["onnx", "onnx_sim", "saved_model", "tfjs"]
    assert m["weights"] == "checkpoint nanodet-m-416.pth"
    assert m["inputs"]["checkpoint_sha256"] == "0a338cd2adc1a7ac7010cdd5fd153f0aba81040c1fd0772c8d72aa57110d88bf"
    assert m["options"] == {"opset": 10, "quantize": None, "backend": "onnx_tf", "patches": "default"}
    assert m["versions"]["tensorflowjs"] == "4.22.0"
    from contracts.hashing import sha256_file
    for rel, digest in m["files"].items():
        assert sha256_file(art / rel) == digest, rel
    names = output_names([8, 16, 32])
    tfjs_spec = m["io_specs"]["tfjs"]
    assert tfjs_spec["input"]["layout"] == "NCHW" and sorted(tfjs_spec["outputs"]) == sorted(names)
    assert all(v.endswith(":0") for v in tfjs_spec["outputs"].values())
    for name in m["run"]["stages"]:   # run facts: in the run block, not the stage entries
        assert "seconds" not in m["stages"][name] and "built" not in m["stages"][name]
    assert "[4/4] tfjs" in converted.stderr

    t0 = time.perf_counter()
    r = run_cli("--model", "m-416", "--out", str(art), "--no-validate", "--no-audit")
    warm = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    m2 = json.loads((art / "manifest.json").read_text())
    assert all(s["cached"] for s in m2["run"]["stages"].values()), m2["run"]
    assert r.stdout.count(" yes") == 4
    assert warm < 15, f"warm re-run took {warm:.1f} s (cold {converted.seconds:.1f} s)"


@pytest.mark.slow
def test_saved_model_agrees_with_pytorch_on_a_real_image(converted, shared):
    import numpy as np
    import tensorflow as tf
    from nanodet_ref.checkpoint import load_weights
    from nanodet_ref.config import load_config
    from nanodet_ref.model import build_model, run_model
    from nanodet_ref.preprocess import preprocess_file
    cfg = load_config("m-416")
    image = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[0]
    x, _, _ = preprocess_file(image, cfg)
    model = build_model(cfg)
    load_weights(model, cfg)
    ref = run_model(model, x)
    spec = json.loads((converted.dir / "manifest.json").read_text())["io_specs"]["saved_model"]
    fn = tf.saved_model.load(str(converted.dir / "saved_model")).signatures[spec["signature"]]
    got = fn(**{spec["input"]["name"]: tf.constant(x)})
    for name, want in ref.items():
        out = got[spec["outputs"][name]].numpy()
        assert out.shape == want.shape, name
        assert np.abs(out - want).max() < 1e-4, (name, float(np.abs(out - want).max()))
    assert ref["cls_pred_stride_8"].max() > 0.3   # a real image with real weights: confident detections


@pytest.mark.slow
def test_tfjs_converter_as_subprocess_matches_in_process(converted, tmp_path):
    """The CLI route (python -m converters.tfjs_entry, substitutes installed first) writes the same weights."""
    out = tmp_path / "tfjs"
    r = subprocess.run([PY, "-m", "converters.tfjs_entry", "--input_format=tf_saved_model",
                        str(converted.dir / "saved_model"), str(out)],
                       cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ours = json.loads((converted.dir / "tfjs" / "model.json").read_text())
    theirs = json.loads((out / "model.json").read_text())
    assert ours["signature"] == theirs["signature"]
    assert ours["weightsManifest"][0]["weights"] == theirs["weightsManifest"][0]["weights"]
    assert ((converted.dir / "tfjs" / "group1-shard1of1.bin").read_bytes()
            == (out / "group1-shard1of1.bin").read_bytes())


# --- import substitutes (contracts/tf_environment.py) -------------------------------------------------------------

def run_py(code, extra_path=None):
    path = os.pathsep.join([str(PROJECT_ROOT)] + ([str(extra_path)] if extra_path else []))
    return subprocess.run([PY, "-c", code], cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=300)


def test_substitutes_fill_only_what_is_missing(tmp_path):
    code = ("import sys, json; from contracts import tf_environment as c; added = c.install(); "
            "print(json.dumps({'added': added, 'again': c.install(), 'tf': 'tensorflow' in sys.modules, "
            "'pkg_resources': getattr(sys.modules.get('pkg_resources'), c.MARKER, False), "
            "'hardmax': callable(sys.modules['tensorflow_addons'].seq2seq.hardmax)}))")
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["added"]) == {"tensorflow_addons", "tensorflow_probability", "tensorflow_decision_forests",
                                 "tensorflowjs.converters.jax_conversion"}
    assert out["again"] == [] and out["tf"] is False and out["pkg_resources"] is False and out["hardmax"]

    real = tmp_path / "tensorflow_addons"   # an installed real package is never shadowed
    real.mkdir()
    (real / "__init__.py").write_text("REAL = True\n")
    r = run_py("from contracts import tf_environment as c; c.install(); import tensorflow_addons as t; print(t.REAL)",
               extra_path=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


@pytest.mark.slow
def test_both_converters_import_in_a_fresh_process():
    """onnx-tf and the TFJS converter import with the substitutes; hardmax is the real definition; the scoped
    pkg_resources stand-in is gone afterwards."""
    code = ("import sys; from contracts import tf_environment as c; c.install(); import onnx_tf.backend; "
            "c.import_tensorflowjs(); import tensorflow as tf, tensorflow_addons as tfa; "
            "h = tfa.seq2seq.hardmax(tf.constant([[1., 3., 2.], [5., 0., 0.]])).numpy().tolist(); "
            "print(h, getattr(sys.modules.get('pkg_resources'), c.MARKER, False))")
    r = run_py(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]] False"


def test_filtered_stderr_drops_runtime_noise_of_children_and_keeps_the_rest(tmp_path):
    """contracts.stderr_filter.filtered_stderr works at the file-descriptor level: lines a child process writes are
    held too; noise is dropped, every other line written on in order."""
    import os
    import subprocess
    import sys

    from contracts.tf_environment import RUNTIME_NOISE
    from contracts.paths import PROJECT_ROOT

    child = tmp_path / "child.py"
    child.write_text("import sys\n"
                     "sys.stderr.write('E0000 cuda_platform.cc:51] failed call to cuInit: INTERNAL\\n')\n"
                     "sys.stderr.write('kept 2\\n')\n")
    parent = tmp_path / "parent.py"
    parent.write_text("import subprocess, sys\n"
                      "from contracts.stderr_filter import filtered_stderr\n"
                      "from contracts.tf_environment import RUNTIME_NOISE\n"
                      "with filtered_stderr(RUNTIME_NOISE, label='test block'):\n"
                      "    print('kept 1', file=sys.stderr)\n"
                      f"    subprocess.run([sys.executable, {str(child)!r}])\n"
                      "    print('I0000 single_machine.cc:374] Starting new session', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, str(parent)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["kept 1", "kept 2"]
    assert RUNTIME_NOISE.search("I0000 00:00:1 devices.cc:67] Number of eligible GPUs (core count >= 8, compute")


def test_tensorflow_import_noise_is_filtered_and_other_lines_kept(tmp_path):
    """contracts.tf_environment.import_tensorflow: TF's import-time C++ lines about GPU plugins are dropped
    (they come before its log level applies); in a fresh process nothing of them reaches stderr."""
    import subprocess
    import sys

    from contracts.tf_environment import IMPORT_NOISE
    from contracts.paths import PROJECT_ROOT

    assert IMPORT_NOISE.search("E0000 00:00:1 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting")
    assert IMPORT_NOISE.search("W0000 00:00:1 computation_placer.cc:177] computation placer already registered.")
    assert not IMPORT_NOISE.search("Traceback (most recent call last):")
    bad_pb = tmp_path / "saved_model.pb"
    bad_pb.write_bytes(b"not a proto")
    for code in ("from contracts.tf_environment import import_tensorflow; import_tensorflow()",
                 # the int64 audit reads SavedModel protos: its first TF import goes through the filter too
                 "from validation.int64_audit.tf_static import _load_saved_model\n"
                 f"try: _load_saved_model(__import__('pathlib').Path({str(tmp_path)!r}))\nexcept Exception: pass"):
        code += "\nimport sys; print('imported' if 'tensorflow' in sys.modules else 'absent')"
        proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr[-2000:]
        assert not [line for line in proc.stderr.splitlines() if IMPORT_NOISE.search(line)], proc.stderr[-2000:]
