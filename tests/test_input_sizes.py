"""Input sizes: feature maps are ceil(size / stride) at every level (as upstream computes its priors); the PAN
neck takes exactly the sizes whose maps halve level by level; any other size is refused on one line saying
which sizes work; a size that works (not a multiple of 32) gives the same rows in the model, the priors, the
decoder, the manifest signature and the exported ONNX."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from contracts.paths import PROJECT_ROOT, configs_dir
from contracts.signature import output_names
from nanodet_ref.config import feature_size, load_config, pan_takes
from nanodet_ref.decode import center_points, decode
from nanodet_ref.model import build_model

WORKS = [415, 313]      # [w, h]: 32*12 + 31 and 32*9 + 25, neither a multiple of 32
REFUSED = [400, 300]    # 400 gives 50/25/13 at strides 8/16/32: 2 x 13 != 25


def config_copy(tmp_path, model: str, size) -> "Path":
    raw = yaml.safe_load((configs_dir() / f"{model}.yml").read_text())
    raw["data"]["val"]["input_size"] = list(size)
    path = tmp_path / f"{model}-{size[0]}x{size[1]}.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("model", ["m-320", "g-416"])
def test_the_pan_rule_is_exactly_what_the_model_runs_at(model):
    """Every height 1..64 (two periods of the coarsest stride; width 32): the model runs and gives
    ceil(size / stride) rows per level iff pan_takes says so (where a coarse map is 1 row, PyTorch broadcasts the
    add: it runs, with the wrong rows)."""
    cfg = load_config(model)
    net = build_model(cfg)
    for h in range(1, 65):
        want = [feature_size(h, s) * feature_size(32, s) for s in cfg.strides]
        try:
            with torch.no_grad():
                rows = [o.shape[1] for o in net(torch.zeros(1, 3, h, 32))[:len(cfg.strides)]]
        except RuntimeError:
            rows = None
        assert (rows == want) == pan_takes(h, cfg.strides), f"height {h}: rows {rows}, ceil gives {want}"


def test_a_size_the_neck_cannot_take_is_refused_on_one_line(tmp_path):
    path = config_copy(tmp_path, "m-416", REFUSED)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--config", str(path), "--out",
                           str(out), "--no-validate", "--no-audit"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"error: {path}: data.val.input_size [400, 300] does not fit the PAN neck: its feature maps "
        "(ceil(size / stride) at strides 8/16/32) must each be twice the next coarser one, but width 400 gives "
        "50/25/13 and height 300 gives 38/19/10; sizes that work: multiples of 32 or 32k+25 to 32k+31 "
        "(nearest: width 384 or 409; height 288 or 313)")
    assert not out.exists()


def test_head_strides_must_match_the_levels_and_double(tmp_path):
    from contracts.errors import UserError

    raw = yaml.safe_load((configs_dir() / "m-416.yml").read_text())
    raw["model"]["arch"]["head"]["strides"] = [8, 16, 32, 64]
    with pytest.raises(UserError, match=r"strides \[8, 16, 32, 64\] has 4 levels but model.arch.fpn.in_channels "
                                        r"has 3"):
        load_config(_dump(tmp_path, raw))
    raw["model"]["arch"]["head"]["strides"] = [8, 16, 24]
    with pytest.raises(UserError, match="each stride must be twice the one before"):
        load_config(_dump(tmp_path, raw))


def _dump(tmp_path, raw):
    path = tmp_path / "strides.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_size_that_works_gives_the_same_rows_everywhere(tmp_path):
    """[415, 313]: PyTorch, the priors, the decoder, the manifest signature and the exported ONNX (patched, opset
    10, through the real ONNX stage) all have ceil(size / stride) rows per level; ONNX agrees with PyTorch."""
    import onnxruntime as ort

    from converters import stage_onnx
    from contracts.signature import signature
    from converters.context import StageContext
    from converters.options import ConvertOptions
    from converters.sources import resolve

    source = resolve(config=config_copy(tmp_path, "m-416", WORKS))
    cfg = source.cfg
    assert cfg.feature_sizes() == [(40, 52), (20, 26), (10, 13)]
    onnx_path = tmp_path / "model.onnx"
    stage_onnx.convert(None, onnx_path, StageContext(source=source, options=ConvertOptions(), artifact_dir=tmp_path,
                                                     log=lambda msg: None))
    model, _ = stage_onnx.build_weighted_model(StageContext(source=source, options=ConvertOptions(),
                                                            artifact_dir=tmp_path))
    x = np.random.default_rng(0).standard_normal((1, 3, WORKS[1], WORKS[0])).astype(np.float32)
    with torch.no_grad():
        ref = dict(zip(output_names(cfg.strides), (t.numpy() for t in model(torch.from_numpy(x)))))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = dict(zip(output_names(cfg.strides), sess.run(output_names(cfg.strides), {"input": x})))
    sig = signature(cfg)["outputs"]
    for s, (fh, fw) in zip(cfg.strides, cfg.feature_sizes()):
        priors = len(center_points(fh, fw, s, cfg.prior_offset))
        for kind in ("cls_pred", "dis_pred"):
            name = f"{kind}_stride_{s}"
            assert ref[name].shape[1] == got[name].shape[1] == priors == fh * fw, name
            assert list(got[name].shape) == sig[name], name
        assert float(np.abs(ref[f"dis_pred_stride_{s}"] - got[f"dis_pred_stride_{s}"]).max()) < 1e-3
    assert len(decode(got, cfg)) == len(decode(ref, cfg)) > 0
