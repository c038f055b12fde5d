"""io specs (artifact names/layout -> the signature), tensor bundles, image-set fallback, CLI user errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from contracts.errors import UserError
from contracts.io_spec import IoSpec, load_io_spec
from contracts.paths import PROJECT_ROOT
from contracts.presets import PRESETS
from validation.runners.tensor_bundle import read_bundle, write_bundle

SPEC = {"input": {"name": "x:0", "layout": "NHWC"},
        "outputs": {"a": "Identity:0", "b": {"name": "Identity_1", "transpose": [0, 2, 1]}}}


def test_io_spec_translates_layout_and_names():
    io = IoSpec.from_dict(SPEC)
    batch = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    x = io.prepare_input(batch)
    assert x.shape == (2, 4, 5, 3) and x[1, 2, 3, 1] == batch[1, 1, 2, 3]
    produced = {"Identity": np.zeros((1, 6, 2)), "Identity_1:0": np.ones((1, 4, 6))}
    out = io.collect(produced, "m")
    assert out["a"].shape == (1, 6, 2) and out["b"].shape == (1, 6, 4)
    assert IoSpec.from_dict(io.to_dict()).to_dict() == io.to_dict()


def test_io_spec_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="layout"):
        IoSpec.from_dict({"input": {"name": "x", "layout": "CHW"}, "outputs": {}})
    with pytest.raises(UserError, match="maps no artifact output to b"):
        IoSpec.from_dict({"input": {"name": "x"}, "outputs": {"a": "y"}}, required_outputs=["a", "b"])
    with pytest.raises(UserError, match="neither JSON nor an existing file"):
        load_io_spec(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_io_spec(str(bad))
    with pytest.raises(UserError, match="has no output 'zz'"):
        IoSpec.from_dict({"input": {"name": "x"}, "outputs": {"a": "zz"}}).collect({"y": np.zeros(1)}, "m")


def test_preset_of_the_peer_covers_the_signature():
    from nanodet_ref.config import load_config
    from contracts.signature import output_names
    io = IoSpec.from_dict(PRESETS["vladmandic-nanodet-m"]["io_spec"],
                          required_outputs=output_names(load_config("m-416").strides))
    assert io.input_name == "input_1:0" and io.layout == "NCHW"


def test_tensor_bundle_round_trip(tmp_path):
    items = [{"f": np.random.default_rng(0).standard_normal((1, 3, 5)).astype(np.float32),
              "i": np.arange(7, dtype=np.int64)}, {"u": np.array([True, False])}]
    path = tmp_path / "b.ndtb"
    write_bundle(path, items, {"k": 1})
    back, meta = read_bundle(path)
    assert meta == {"k": 1}
    np.testing.assert_array_equal(back[0]["f"], items[0]["f"])
    assert back[0]["i"].dtype == np.int32 and back[0]["i"].tolist() == list(range(7))
    assert back[1]["u"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="int32"):
        write_bundle(path, [{"big": np.array([2**40])}])


def test_fallback_photos_without_shared_folder(tmp_path, monkeypatch, capsys):
    from validation.dataset import resolve_images
    monkeypatch.setenv("NANODET_SHARED", str(tmp_path / "absent"))
    images = resolve_images()
    assert len(images.paths) >= 3 and images.annotations is None
    assert "NO COCO AP" in images.warnings[0] and "NO COCO AP" in capsys.readouterr().err


def test_cli_user_error_is_one_line_without_traceback():
    r = subprocess.run([sys.executable, "-m", "commands", "validate", "--model", "no-such-model"],
                       cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown MODEL") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_bad_options_name_the_option(tmp_path, capsys):
    from commands.validate import main

    def err(*args):
        code = main(list(args))
        text = capsys.readouterr().err
        assert code == 2 and text.startswith("error: ") and len(text.strip().splitlines()) == 1, text
        return text

    assert "--artifacts" in err("validate", "--model", "m-416", "--artifacts", str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.onnx").write_bytes(b"")
    assert "--stages: unknown bogus" in err("validate", "--model", "m-416", "--artifacts", str(tmp_path / "a"),
                                             "--stages", "bogus")
    assert "--io-spec" in err("foreign", "--model", "m-416", "--tfjs", str(tmp_path))
    assert "maps no artifact output to cls_pred_stride_8" in err("foreign", "--model", "m-416", "--tfjs",
                                                                 str(tmp_path), "--io-spec", json.dumps(SPEC))
    assert "--preset: unknown 'nope'" in err("foreign", "--preset", "nope")
    (tmp_path / "m-416").mkdir()
    text = err("check", "--model", "m-416", "--artifacts", str(tmp_path))
    assert "validation.json" in text and "no accepted figures" in text
