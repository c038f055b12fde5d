"""Reading artifact folders: weights provenance from the manifest (``contracts.manifest``), io specs from a TFJS
signature (``contracts.io_spec``), TFJS quantization, and manifest sha256 verification."""
from __future__ import annotations

import json

import pytest

from contracts.errors import UserError
from contracts.hashing import sha256_file
from contracts.io_spec import io_spec_from_tfjs_signature
from contracts.manifest import Manifest
from contracts.signature import output_shapes
from nanodet_ref.config import load_config
from validation import artifacts as art


@pytest.fixture(scope="module")
def cfg():
    return load_config("m-416")


def test_weights_provenance_checkpoint_and_random():
    sha = "ab" * 32
    m = {"weights_provenance": {"kind": "checkpoint", "file": "x.pth", "sha256": sha},
         "inputs": {"checkpoint": "$NANODET_SHARED/weights/x.pth", "checkpoint_sha256": sha, "seed": None}}
    p = Manifest(m).weights_provenance()
    assert p["kind"] == "checkpoint" and p["sha256"] == sha and p["checkpoint"].endswith("weights/x.pth")
    assert Manifest({"inputs": {"checkpoint": None, "seed": 7}}).weights_provenance() == {"kind": "random", "seed": 7}
    assert Manifest({"weights": "random (seed 3)"}).weights_provenance() == {"kind": "random", "seed": 3}
    assert Manifest({}).weights_provenance() == {}


def test_reference_checkpoint_must_match_sha(tmp_path, cfg):
    ck = tmp_path / "w.pth"
    ck.write_bytes(b"not really weights")
    good = {"kind": "checkpoint", "sha256": sha256_file(ck), "checkpoint": str(ck)}
    assert art.reference_checkpoint(good, cfg) == ck
    with pytest.raises(UserError, match="--checkpoint .* sha256 differs"):
        art.reference_checkpoint({**good, "sha256": "0" * 64}, cfg, given=ck)
    assert art.reference_checkpoint({"kind": "random", "seed": 0}, cfg) is None


def signature_json(tmp_path, outputs: dict, input_shape=(1, 3, 416, 416)):
    def shape(dims):
        return {"dim": [{"size": str(d)} for d in dims]}
    sig = {"inputs": {"input": {"name": "input:0", "tensorShape": shape(input_shape)}},
           "outputs": {k: {"name": n, "tensorShape": shape(s)} for k, (n, s) in outputs.items()}}
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"signature": sig, "modelTopology": {}, "weightsManifest": [
        {"paths": ["a.bin"], "weights": [{"name": "w", "shape": [2], "dtype": "float32",
                                          "quantization": {"dtype": "float16"}}]}]}))
    return path


def test_io_spec_from_tfjs_signature_by_key_and_by_shape(tmp_path, cfg):
    shapes = output_shapes(cfg)
    by_key = {k: (f"Identity_{i}:0", s) for i, (k, s) in enumerate(shapes.items())}
    io = io_spec_from_tfjs_signature(signature_json(tmp_path, by_key), output_shapes(cfg))
    assert io.input_name == "input:0" and io.layout == "NCHW"
    assert {k: o.name for k, o in io.outputs.items()} == {k: n for k, (n, _) in by_key.items()}
    by_shape = {f"Identity_{i}:0": (f"Identity_{i}:0", s) for i, s in enumerate(reversed(list(shapes.values())))}
    io = io_spec_from_tfjs_signature(signature_json(tmp_path, by_shape, (1, 416, 416, 3)), output_shapes(cfg))
    assert io.layout == "NHWC"
    assert {k: by_shape[o.name][1] for k, o in io.outputs.items()} == shapes
    ambiguous = dict(by_shape)
    ambiguous["extra:0"] = ("extra:0", shapes["cls_pred_stride_8"])
    with pytest.raises(UserError, match="cannot tell which output is cls_pred_stride_8"):
        io_spec_from_tfjs_signature(signature_json(tmp_path, ambiguous), output_shapes(cfg))
    assert art.tfjs_quantization(tmp_path / "model.json") == "float16"


def test_manifest_io_spec_wins(tmp_path, cfg):
    spec = {"input": {"name": "x", "layout": "NHWC"},
            "outputs": {k: f"o{i}" for i, k in enumerate(output_shapes(cfg))}}
    io = art.stage_io_spec(Manifest({"stages": {"tfjs": {"io_spec": spec}}}), "tfjs", tmp_path / "model.json", cfg)
    assert io.input_name == "x" and io.layout == "NHWC"
    io = art.stage_io_spec(Manifest({}), "onnx", tmp_path / "model.onnx", cfg)
    assert io.input_name == "input" and io.outputs["cls_pred_stride_8"].name == "cls_pred_stride_8"


def test_verify_hashes_finds_changed_and_missing_files(tmp_path):
    (tmp_path / "tfjs").mkdir()
    (tmp_path / "tfjs" / "model.json").write_text("{}")
    (tmp_path / "tfjs" / "w.bin").write_bytes(b"\0" * 8)
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    manifest = {"stages": {
        "tfjs": {"output": "tfjs", "files": {"model.json": sha256_file(tmp_path / "tfjs" / "model.json"),
                                             "w.bin": sha256_file(tmp_path / "tfjs" / "w.bin")}},
        "onnx": {"output": "model.onnx", "files": {"model.onnx": sha256_file(tmp_path / "model.onnx")}}}}
    assert art.verify_hashes(tmp_path, Manifest(manifest)) == []
    (tmp_path / "tfjs" / "w.bin").write_bytes(b"\0" * 7 + b"\1")
    (tmp_path / "model.onnx").unlink()
    problems = art.verify_hashes(tmp_path, Manifest(manifest))
    assert problems == ["tfjs: tfjs/w.bin sha256 differs from manifest", "onnx: model.onnx missing (listed in manifest)"]


def test_corrupt_stage_fails_its_stage_only(shared, tmp_path):
    """A stage file that cannot be loaded is a FAILED stage naming the error, not a crash of the validation."""
    from validation.api import validate_artifacts

    (tmp_path / "model.onnx").write_bytes(b"this is not an onnx model")
    report = validate_artifacts(tmp_path, load_config("m-416"), limit=1, pictures=0, log=lambda m: None)
    assert report["pass"] is False and report["stages"]["pytorch"]["pass"] is True
    onnx = report["stages"]["onnx"]
    assert onnx["pass"] is False and onnx["failures"][0].startswith("onnx runner failed: RuntimeError: cannot load")
    assert json.loads((tmp_path / "validation.json").read_text())["stages"]["onnx"]["pass"] is False
    assert "| onnx | FAIL |" in (tmp_path / "report.md").read_text()
