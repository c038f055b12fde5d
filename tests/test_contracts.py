"""The shared contracts (``contracts/``): one atomic-write scheme that ``sweep`` recognises for every writer, the
manifest read back by the one reader exactly as the writer wrote it, and io specs that keep what the converters
record and are read from a TFJS signature by one function."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contracts import atomic
from contracts.errors import UserError
from contracts.hashing import digest_of, file_hashes
from contracts.io_spec import IoSpec, io_spec_from_tfjs_signature
from contracts.manifest import FILENAME, Manifest, ManifestWriter
from contracts.presets import PRESETS, find_preset, preset_io_spec
from contracts.signature import output_names, output_shapes, signature_io_spec
from nanodet_ref.config import load_config


def test_every_atomic_write_uses_a_temp_name_that_sweep_removes(tmp_path, monkeypatch):
    """Whatever kills a write before its rename leaves a temp file or folder; each writer's temp name is one that
    ``sweep`` recognises (the validation report's and the audit's used to have names of their own)."""
    temps, rename = [], os.replace

    def spy(src, dst):
        temps.append(Path(src).name if Path(src).parent == tmp_path else Path(src).parent.name)
        return rename(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic.write_text(tmp_path / "report.md", "text\n")
    atomic.write_bytes(tmp_path / "picture.png", b"\x89PNG")
    atomic.write_json(tmp_path / "audit.json", {"a": 1}, indent=1)
    with atomic.staged_output(tmp_path / "pictures") as out:
        out.mkdir()
    monkeypatch.undo()
    assert len(temps) == 4 and all(atomic.is_leftover(name) for name in temps), temps
    for name in temps:   # what a killed run would have left beside the finished files
        (tmp_path / name).write_text("half")
    assert sorted(atomic.sweep(tmp_path)) == sorted(temps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.json", "picture.png", "pictures", "report.md"]
    assert json.loads((tmp_path / "audit.json").read_text()) == {"a": 1}


def test_the_manifest_reader_reads_what_the_writer_wrote(tmp_path):
    cfg = load_config("m-416")
    (tmp_path / "tfjs").mkdir()
    (tmp_path / "tfjs" / "model.json").write_text("{}")
    hashes = file_hashes(tmp_path / "tfjs")
    tfjs_spec = {"input": {"name": "input:0", "signature_key": "input", "layout": "NCHW", "shape": [1, 3, 416, 416]},
                 "outputs": {n: f"Identity_{i}:0" for i, n in enumerate(output_names(cfg.strides))}}
    writer = ManifestWriter(tmp_path, ["onnx", "tfjs"])
    writer.complete_stage("onnx", {"output": "model.onnx", "files": {}, "digest": "d-onnx", "seconds": 3.0,
                                   "io_spec": signature_io_spec(cfg).to_dict()})
    writer.complete_stage("tfjs", {"output": "tfjs", "files": hashes, "digest": digest_of(hashes),
                                   "io_spec": tfjs_spec})
    writer.update(name="m-416", model="m-416", weights="random (seed 0)",
                  weights_provenance={"weights": "random (seed 0)", "kind": "random", "seed": 0})
    writer.save()

    read = Manifest.load(tmp_path)
    assert read.complete and read.name == "m-416" and read.model == "m-416"
    assert read.stage_output("tfjs") == "tfjs" and read.stage_files("tfjs") == hashes
    assert read.stage_digests(["onnx", "tfjs", "saved_model"]) == {"onnx": "d-onnx", "tfjs": digest_of(hashes)}
    assert "seconds" not in read.stage("onnx")   # run facts live in the run block, not the stage entry
    assert read.io_spec("tfjs", output_names(cfg.strides)).to_dict() == tfjs_spec
    assert read.io_spec("onnx").input_name == "input" and read.io_spec("saved_model") is None
    assert read.weights_provenance() == {"weights": "random (seed 0)", "kind": "random", "seed": 0}
    assert json.loads((tmp_path / FILENAME).read_text())["io_specs"]["tfjs"] == tfjs_spec


def test_an_unreadable_manifest_is_a_user_error_or_empty_for_the_pipeline(tmp_path):
    (tmp_path / FILENAME).write_text("{not json")
    with pytest.raises(UserError, match=f"{FILENAME}: not readable JSON"):
        Manifest.load(tmp_path)
    assert not Manifest.load(tmp_path, strict=False)
    assert not Manifest.load(tmp_path / "absent")


@pytest.mark.parametrize("spec", [
    {"input": {"name": "input", "layout": "NCHW", "shape": [1, 3, 416, 416], "onnx_name": "input"},
     "outputs": {"cls_pred_stride_8": "cls_pred_stride_8"}, "signature": "serving_default"},      # onnx_tf
    {"input": {"name": "input:0", "signature_key": "input", "layout": "NHWC", "shape": [1, 416, 416, 3]},
     "outputs": {"cls_pred_stride_8": {"name": "Identity:0", "transpose": [0, 2, 1]}}},          # tfjs
    {"input": {"name": "input", "layout": "NCHW"}, "outputs": {"cls_pred_stride_8": "x"}},      # the peer's
])
def test_an_io_spec_keeps_what_the_converters_record(spec):
    """The manifest gets back every key a backend or stage recorded, in the same order (the same bytes)."""
    assert json.dumps(IoSpec.from_dict(spec).to_dict()) == json.dumps(spec)


def test_a_tfjs_io_spec_follows_the_saved_model_keys(tmp_path):
    """Converting: each output is the tensor its SavedModel serving key became; the layout is the SavedModel's."""
    cfg = load_config("m-416")
    shapes = output_shapes(cfg)
    keys = {n: f"out_{i}" for i, n in enumerate(shapes)}
    sig = {"inputs": {"input": {"name": "input:0", "tensorShape": {"dim": [{"size": "1"}, {"size": "416"},
                                                                            {"size": "416"}, {"size": "3"}]}}},
           "outputs": {k: {"name": f"Identity_{i}:0"} for i, k in enumerate(keys.values())}}
    (tmp_path / "model.json").write_text(json.dumps({"signature": sig}))
    saved_model = IoSpec.from_dict({"input": {"name": "input", "layout": "NHWC"}, "outputs": keys})
    io = io_spec_from_tfjs_signature(tmp_path / "model.json", shapes, saved_model)
    assert io.to_dict() == {"input": {"name": "input:0", "signature_key": "input", "layout": "NHWC",
                                      "shape": [1, 416, 416, 3]},
                            "outputs": {n: f"Identity_{i}:0" for i, n in enumerate(shapes)}}
    del sig["outputs"]["out_3"]
    (tmp_path / "model.json").write_text(json.dumps({"signature": sig}))
    with pytest.raises(UserError, match="signature has no output 'out_3'"):
        io_spec_from_tfjs_signature(tmp_path / "model.json", shapes, saved_model)


def test_presets_are_checked_io_specs():
    cfg = load_config(PRESETS["vladmandic-nanodet-m"]["model"])
    io = preset_io_spec("vladmandic-nanodet-m", "--preset", output_names(cfg.strides))
    assert io.input_name == "input_1:0" and io.outputs["dis_pred_stride_32"].name == "Identity_5:0"
    with pytest.raises(UserError, match="--preset: unknown 'nope' \\(known: vladmandic-nanodet-m\\)"):
        find_preset("nope")


def test_sweep_puts_back_a_folder_whose_swap_was_cut_between_its_renames(tmp_path):
    """``replace_into_place`` killed after moving the old folder aside: sweep restores it instead of removing it."""
    target = tmp_path / "pictures"
    target.mkdir()
    (target / "a.png").write_bytes(b"old picture")
    aside = tmp_path / ".pictures.old-abc123"
    aside.mkdir()
    os.replace(target, aside / "pictures")                  # the first rename happened ...
    (tmp_path / ".pictures.tmp-xyz").mkdir()                # ... the new copy was still staged
    atomic.sweep(tmp_path)
    assert (target / "a.png").read_bytes() == b"old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures"]
