"""Tests of the converters: options, naming, user errors, and one real conversion.

The end-to-end test converts m-416 with the real toolchain, checks the artifacts, the SavedModel against PyTorch
on a real image, and that a re-run is fully cached and fast. The pipeline's cache and staging are tested in
test_pipeline_staging.py, the TF import environment in test_tf_environment.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from contracts.signature import output_names
from converters.options import ConvertOptions, artifact_name, check_opset
from converters.sources import resolve

PY = sys.executable


def run_cli(*args, env=None, timeout=900):
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    return subprocess.run([PY, "-m", "commands", "convert", *args], cwd=PROJECT_ROOT, env=full_env,
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
    assert m["options"] == {"opset": 10, "quantize": None, "backend": "tf_nhwc", "patches": "default",
                            "layout": "per-level"}
    assert m["versions"]["tensorflowjs"] == "4.22.0"
    from contracts.hashing import sha256_file
    for rel, digest in m["files"].items():
        assert sha256_file(art / rel) == digest, rel
    names = output_names([8, 16, 32])
    tfjs_spec = m["io_specs"]["tfjs"]
    assert tfjs_spec["input"]["layout"] == "NHWC" and sorted(tfjs_spec["outputs"]) == sorted(names)   # tf_nhwc
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
    feed = x.transpose(0, 2, 3, 1) if spec["input"].get("layout") == "NHWC" else x   # tf_nhwc: NHWC input
    got = fn(**{spec["input"]["name"]: tf.constant(feed)})
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
