"""nanodet-t's TAN neck (nanodet_ref/tan.py, nanodet_ref/transformer.py): upstream's state_dict keys, attention and
layer norm equal to torch's own modules, the whole neck equal to upstream's forward (resampling to a size), the
position-embedding size rule, seeded random weights, and a small TAN detector converted through every stage."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from nanodet_ref.arch_registry import build_fpn
from nanodet_ref.config import parse_config
from nanodet_ref.transformer import LayerNorm, SelfAttention, TransformerEncoder

# model.arch.fpn of upstream's nanodet-t.yml
T_FPN = {"name": "TAN", "in_channels": [116, 232, 464], "out_channels": 128, "feature_hw": [20, 20],
         "num_heads": 8, "num_encoders": 1, "mlp_ratio": 4, "dropout_ratio": 0.1, "activation": "LeakyReLU"}

# Read from upstream's code (fpn/tan.py, module/transformer.py, module/conv.py): TAN registers lateral_convs
# (ConvModule: conv without bias, norm "bn"), transformer, then its own pos_embed (a module's own parameters come
# first in a state_dict); TransformerBlock: conv (ConvModule without norm: conv with bias), linear (unused in
# forward), encoders; TransformerEncoder: norm1, attn (nn.MultiheadAttention: in_proj_weight, in_proj_bias,
# out_proj), norm2, mlp (fc1, act, fc2, drop).
LATERAL = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
ENCODER = ["norm1.weight", "norm1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
           "attn.out_proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
           "mlp.fc2.bias"]
UPSTREAM_T_KEYS = (["pos_embed"] + [f"lateral_convs.{i}.{k}" for i in range(3) for k in LATERAL]
                   + ["transformer.conv.conv.weight", "transformer.conv.conv.bias", "transformer.linear.weight",
                      "transformer.linear.bias"] + [f"transformer.encoders.0.{k}" for k in ENCODER])


SMALL_TAN = """\
# a small nanodet-t: ShuffleNetV2 0.5x backbone, a 32-channel TAN, 64 x 64 input
model:
  arch:
    name: OneStageDetector
    backbone: {name: ShuffleNetV2, model_size: 0.5x, out_stages: [2, 3, 4], activation: LeakyReLU}
    fpn: {name: TAN, in_channels: [48, 96, 192], out_channels: 32, feature_hw: [4, 4], num_heads: 4,
          num_encoders: 1, mlp_ratio: 2, dropout_ratio: 0.1, activation: LeakyReLU}
    head: {name: NanoDetHead, num_classes: 3, input_channel: 32, feat_channels: 32, stacked_convs: 1,
           share_cls_reg: True, octave_base_scale: 5, scales_per_octave: 1, strides: [8, 16, 32], reg_max: 7,
           norm_cfg: {type: BN}}
data:
  val:
    input_size: [64, 64]
    keep_ratio: True
    pipeline: {normalize: [[103.53, 116.28, 123.675], [57.375, 57.12, 58.395]]}
class_names: [person, car, dog]
"""


def test_tan_state_dict_is_upstreams():
    """Keys in upstream's order, and the shapes a nanodet-t checkpoint holds."""
    sd = build_fpn(dict(T_FPN)).state_dict()
    assert list(sd) == UPSTREAM_T_KEYS
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["pos_embed"] == (400, 1, 128)
    assert shapes["transformer.conv.conv.weight"] == (128, 384, 1, 1)
    assert shapes["transformer.encoders.0.attn.in_proj_weight"] == (384, 128)
    assert shapes["transformer.encoders.0.mlp.fc1.weight"] == (512, 128)
    two = build_fpn(dict(T_FPN, num_encoders=2, out_channels=384, in_channels=[8, 8, 8])).state_dict()
    assert "transformer.encoders.1.mlp.fc2.bias" in two
    assert "transformer.conv.conv.weight" in two  # 3 x 384 in, 384 out: still a conv


def _randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[-1] ** -0.5 if p.dim() > 1 else 0.3))
    return module


@pytest.mark.parametrize("batch", [1, 2])
def test_attention_equals_torch_multihead_attention(batch):
    """SelfAttention(x) == nn.MultiheadAttention(x, x, x)[0] (upstream's call: sequence-first, need_weights
    True, no key/value bias) with the very same state_dict, in eval mode (dropout off)."""
    mine = _randomised(SelfAttention(64, 8)).eval()
    torch_mha = nn.MultiheadAttention(64, 8, dropout=0.1).eval()
    torch_mha.load_state_dict(mine.state_dict(), strict=True)
    x = torch.randn(50, batch, 64, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        got, want = mine(x), torch_mha(x, x, x)[0]
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())


def test_layer_norm_equals_torch_layer_norm():
    mine = _randomised(LayerNorm(96))
    torch_ln = nn.LayerNorm(96)
    torch_ln.load_state_dict(mine.state_dict(), strict=True)
    x = torch.randn(30, 2, 96, generator=torch.Generator().manual_seed(2)) * 5 + 3
    with torch.no_grad():
        assert float((mine(x) - torch_ln(x)).abs().max()) <= 1e-5


def _upstream_encoder(enc: TransformerEncoder, act: nn.Module) -> nn.Module:
    """Upstream's TransformerEncoder forward from torch's own modules, loaded with ``enc``'s state_dict."""

    class Upstream(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.attn = nn.MultiheadAttention(dim, enc.attn.num_heads, dropout=0.1)
            self.mlp = nn.Sequential()
            self.mlp.fc1, self.mlp.act, self.mlp.drop, self.mlp.fc2 = (nn.Linear(dim, hidden), act,
                                                                       nn.Dropout(0.1), nn.Linear(hidden, dim))

        def forward(self, x):
            y = self.norm1(x)
            x = x + self.attn(y, y, y)[0]
            return x + self.mlp(self.norm2(x))

    dim, hidden = enc.mlp.fc1.in_features, enc.mlp.fc1.out_features
    up = Upstream(dim, hidden)
    up.load_state_dict(enc.state_dict(), strict=True)
    return up.eval()


def _upstream_tan_forward(tan, inputs, act: nn.Module):
    """Upstream's TAN.forward (F.interpolate to the other level's size, TransformerBlock) on ``tan``'s weights."""
    block = tan.transformer
    laterals = [conv(x) for conv, x in zip(tan.lateral_convs, inputs)]
    size = laterals[1].shape[2:]
    mid = torch.cat((F.interpolate(laterals[0], size=size, mode="bilinear"), laterals[1],
                     F.interpolate(laterals[2], size=size, mode="bilinear")), dim=1)
    b, _, h, w = mid.shape
    x = block.conv(mid).flatten(2).permute(2, 0, 1) + tan.pos_embed
    for enc in block.encoders:
        x = _upstream_encoder(enc, act)(x)
    mid = x.permute(1, 2, 0).reshape(b, -1, h, w)
    return (laterals[0] + F.interpolate(mid, size=laterals[0].shape[2:], mode="bilinear"), laterals[1] + mid,
            laterals[2] + F.interpolate(mid, size=laterals[2].shape[2:], mode="bilinear"))


@pytest.mark.parametrize("act,hw", [("LeakyReLU", (8, 8)), ("GELU", (4, 16))])
def test_tan_equals_upstreams_forward(act, hw):
    """The whole neck against upstream's forward, recomputed with torch's modules and F.interpolate(size=...):
    the x2 / x0.5 resampling modules mean the same at the sizes the config accepts, and any h, w with
    h * w == feature_hw[0] * feature_hw[1] broadcasts the position embedding, as upstream."""
    tan = _randomised(build_fpn(dict(T_FPN, in_channels=[16, 24, 32], out_channels=32, num_heads=4,
                                     num_encoders=2, mlp_ratio=2, activation=act, feature_hw=[8, 8])), seed=3)
    tan.eval()
    gen = torch.Generator().manual_seed(4)
    h, w = hw
    inputs = [torch.randn(1, 16, 2 * h, 2 * w, generator=gen), torch.randn(1, 24, h, w, generator=gen),
              torch.randn(1, 32, h // 2, w // 2, generator=gen)]
    activation = nn.LeakyReLU(0.1) if act == "LeakyReLU" else nn.GELU()
    with torch.no_grad():
        got, want = tan(inputs), _upstream_tan_forward(tan, inputs, activation)
    for g, u in zip(got, want):
        assert g.shape == u.shape and float((g - u).abs().max()) <= 1e-5 * max(1.0, float(u.abs().max()))


def _t_config(size, **fpn):
    raw = {"model": {"arch": {"backbone": {"name": "ShuffleNetV2", "model_size": "1.0x", "out_stages": [2, 3, 4]},
                              "fpn": dict(T_FPN, **fpn),
                              "head": {"name": "NanoDetHead", "num_classes": 2, "input_channel": 128,
                                       "strides": [8, 16, 32]}}},
           "data": {"val": {"input_size": list(size), "pipeline": {"normalize": [[0, 0, 0], [1, 1, 1]]}}},
           "class_names": ["a", "b"]}
    return parse_config(raw, name="t.yml")


def test_input_sizes_must_fill_the_position_embedding():
    """Upstream adds pos_embed (feature_hw[0] * feature_hw[1] positions) without interpolation: the middle
    (stride-16) map must have that many cells. 320 x 320 (20 x 20) and 640 x 160 (40 x 10) do; 416 does not."""
    assert _t_config((320, 320)).input_size == (320, 320)
    assert _t_config((640, 160)).input_size == (640, 160)
    with pytest.raises(UserError) as err:
        _t_config((416, 416))
    text = str(err.value)
    assert "\n" not in text and "t.yml" in text and "model.arch.fpn.feature_hw [20, 20]" in text
    assert "26x26" in text and "[320, 320]" in text
    with pytest.raises(UserError, match="model.arch.fpn.feature_hw must be"):
        _t_config((320, 320), feature_hw=[20])


def test_random_weights_fill_the_transformer_from_the_seed():
    """Seeded random weights reach what checkpoint.random_init does not know (position embeddings, linear
    layers, layer norms): two builds with one seed are equal, another seed differs, none is left at its
    construction value (pos_embed zeros, LayerNorm ones)."""
    import yaml

    from nanodet_ref.checkpoint import random_init
    from nanodet_ref.model import build_model

    cfg = parse_config(yaml.safe_load(SMALL_TAN), name="small-tan")
    models = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed + 100)  # the global RNG must not matter
        model = build_model(cfg)
        random_init(model, seed, cfg.input_size)
        models.append(model.fpn.state_dict())
    for key in ("pos_embed", "transformer.encoders.0.attn.in_proj_weight", "transformer.encoders.0.norm1.weight",
                "transformer.encoders.0.mlp.fc2.bias"):
        assert torch.equal(models[0][key], models[1][key]), key
        assert not torch.equal(models[0][key], models[2][key]), key
    assert float(models[0]["pos_embed"].std()) > 0.5
    assert float((models[0]["transformer.encoders.0.norm1.weight"] - 1).abs().max()) > 0.1



@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx_tf", "tf_nhwc"])
def test_small_tan_model_converts_through_every_stage(tmp_path, test_output, backend):
    """A small TAN detector (seeded random weights) through `convert` at opset 10, with the default backend and
    with ours: attention, layer norm and position embeddings through ONNX, onnxsim, the SavedModel, tensorflowjs
    and TFJS in Node (wasm), every stage PASS (validation's tolerance) with every detection matched, the TAN's
    resampling rebuilt by the opset-10 patch. (tf_nhwc: TFJS runs the attention's output projection right only
    because of the two tensorflowjs work-arounds in converters/tf_nhwc/matmul.py.)"""
    from nanodet_ref.samples import sample_photos
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sample_photos()[:2]:
        (photos / p.name).write_bytes(p.read_bytes())
    config = tmp_path / "small-tan.yml"
    config.write_text(SMALL_TAN)
    out = test_output / "artifacts" / f"small-tan-{backend}"
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--config", str(config), "--out", str(out),
                           "--backend", backend, "--images", str(photos), "--no-audit"], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=600)
    (test_output / f"convert-small-tan-{backend}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    replaced = manifest["stages"]["onnx"]["patch_reports"]["pan_resample_opset10"]["replaced"]
    assert replaced == {"fpn.upsample": "bilinear x2", "fpn.downsample": "bilinear x0.5"}
    import onnx
    ops = {n.op_type for n in onnx.load(str(out / "model.sim.onnx")).graph.node}
    assert {"MatMul", "Softmax", "ReduceMean", "Sqrt"} <= ops and "LayerNormalization" not in ops
    report = json.loads((out / "validation.json").read_text())
    assert report["stages"]["pytorch"]["reference_detections"] > 0
    for name in ("onnx", "onnx_sim", "saved_model", "tfjs"):
        stage = report["stages"][name]
        assert stage["pass"] is True, (name, stage.get("failures"))
        assert stage["max_abs_diff"] <= 1e-3 and stage["matched_fraction"] == 1.0, name
