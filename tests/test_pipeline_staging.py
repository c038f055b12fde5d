"""The pipeline's cache and staging, driven through ``run_stages`` with small stages that write real files
(the pipeline code under test is the real one): cached re-runs, rebuild reasons, sibling reuse, cache keys, a
failing stage or check leaving the old folder as it was, reports kept only with the files they describe, an
interrupted swap completed by the next run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from contracts import atomic
from converters import pipeline
from converters.options import ConvertOptions
from converters.sources import resolve




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


def test_a_folder_with_another_programs_manifest_is_refused_and_not_swept(tmp_path):
    """A web app's folder has a manifest.json too: --out pointing at it is refused, and nothing in it (not even a
    name that looks like one of our temporaries) is removed."""
    app = tmp_path / "public"
    app.mkdir()
    (app / "manifest.json").write_text(json.dumps({"name": "My PWA", "icons": []}))
    (app / "report.md").write_text("the user's own report")
    (app / ".vimrc.old-2023").write_text("kept")
    before = folder_hashes(app)
    with pytest.raises(UserError, match="not an artifact folder .*not written by this toolkit"):
        pipeline.run_stages(make_source(tmp_path), ConvertOptions(), app, stages=toy_stages([]), log=quiet)
    assert folder_hashes(app) == before and (app / ".vimrc.old-2023").exists()
    with pipeline.artifact_lock(app, log=quiet):   # validate / check / accept take the lock: no sweep either
        pass
    assert folder_hashes(app) == before
