"""``--input-size W,H``: a model converted at another size than its config's. The artifact is named
``<model>-WxH`` and its manifest says the size; the size enters the first stage's cache key (the config file is
the same); validate finds the folder's size from its manifest; a size the neck cannot take is the config's own
one-line refusal, naming the option."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT, configs_dir
from contracts.errors import UserError


def test_parse_input_size():
    from nanodet_ref.input_size import parse_input_size

    assert parse_input_size("320,256") == (320, 256)
    assert parse_input_size("320x320") == (320, 320)
    assert parse_input_size("320") == (320, 320)
    assert parse_input_size(None) is None
    with pytest.raises(UserError, match=r"--input-size 320,0: give the width and height in pixels"):
        parse_input_size("320,0")


def test_a_sized_conversion_is_named_and_recorded_and_keyed_by_its_size(tmp_path):
    """m-416 at 320x320, the ONNX stage only: folder m-416-320x320, the manifest's model, inputs.input_size and
    signature say 320, the ONNX input is [1, 3, 320, 320] with 40x40/20x20/10x10 levels; the first stage's cache
    key differs from the config's own size (else a sibling m-416 folder's model.onnx would be copied in)."""
    import onnx

    from commands.validate import sized_for_folder
    from converters import stage_onnx
    from converters.context import StageContext
    from converters.options import ConvertOptions
    from converters.pipeline import compute_key, default_artifact_dir, run_stages, source_inputs
    from converters.sources import resolve
    from nanodet_ref.config import load_config

    options = ConvertOptions()
    sized, plain = resolve(model="m-416", input_size=(320, 320)), resolve(model="m-416")
    assert default_artifact_dir(sized, options).name == "m-416-320x320"
    assert resolve(model="m-416", input_size=(416, 416)).name == "m-416"   # the config's own size: no suffix
    keys = [compute_key(stage_onnx, StageContext(source=s, options=options, artifact_dir=tmp_path), source_inputs(s))
            for s in (sized, plain)]
    assert keys[0] != keys[1]

    folder = tmp_path / "m-416-320x320"
    run_stages(sized, options, folder, stages=(stage_onnx,), log=lambda msg: None)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["name"] == manifest["model"] == "m-416-320x320"
    assert manifest["inputs"]["input_size"] == [320, 320] and manifest["inputs"]["config"] == "configs/m-416.yml"
    assert manifest["signature"]["input"]["shape"] == [1, 3, 320, 320]
    assert manifest["signature"]["outputs"]["cls_pred_stride_8"] == [1, 1600, 80]
    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 320, 320]

    cfg = sized_for_folder(load_config("m-416"), folder, argparse.Namespace(input_size=None))
    assert cfg.name == "m-416-320x320" and cfg.input_size == (320, 320) and cfg.feature_sizes()[0] == (40, 40)
    # the config's reference AP was measured at 416: the validation at 320 is not held to it
    assert load_config("m-416").toolkit["validation"]["reference_ap"] == 0.329
    assert "reference_ap" not in cfg.toolkit["validation"]


def test_a_size_the_pan_cannot_take_is_refused_on_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--input-size", "400,300",
                           "--out", str(out), "--no-validate", "--no-audit"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"error: {configs_dir() / 'm-416.yml'} with --input-size 400,300: data.val.input_size [400, 300] does not "
        "fit the PAN neck: its feature maps (ceil(size / stride) at strides 8/16/32) must each be twice the next "
        "coarser one, but width 400 gives 50/25/13 and height 300 gives 38/19/10; sizes that work: multiples of 32 "
        "or 32k+25 to 32k+31 (nearest: width 384 or 409; height 288 or 313)")
    assert not out.exists()
