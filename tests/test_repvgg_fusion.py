"""The export patch repvgg_deploy_fusion: RepVGG's three training branches folded into one 3x3 conv per block.

Exact in real arithmetic: float64 before/after agree to rounding (~1e-13) for every kind of block and on the whole
RepVGG-A0_416 model on real images; in float32 within 1e-5 of the outputs' scale, the fold adding no more than
float32 arithmetic itself does. Without the patch the export keeps both branch convs and the
identity BatchNorm (the counterpart test; the RepVGG structural oracle fails as well).
"""
from __future__ import annotations

import copy
import io
import warnings
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

import patches
from nanodet_ref.checkpoint import load_weights
from nanodet_ref.config import load_config
from nanodet_ref.model import build_model
from nanodet_ref.preprocess import preprocess_file
from nanodet_ref.repvgg import RepVGG, RepVGGConvModule
from patches import repvgg_deploy_fusion as fusion

CONFIG = "nanodet-RepVGG-A0_416.yml"
IMAGES = 2


def _randomise_bns(module, seed: int) -> None:
    """BN statistics and affine parameters far from the identity, so that a wrong fold shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.normal_(0, 0.5, generator=gen)
            bn.running_mean.normal_(0, 0.5, generator=gen)
            bn.running_var.uniform_(0.5, 2.0, generator=gen)


@pytest.mark.parametrize("cin,cout,stride,groups", [(8, 8, 1, 1), (8, 16, 1, 1), (8, 8, 2, 1), (8, 8, 1, 2),
                                                     (8, 8, 1, 4), (8, 16, 2, 4)])
def test_fold_equals_the_three_branches(cin, cout, stride, groups):
    """Every kind of block (identity branch or not, stride 1 or 2, grouped): float64 before and after within 1e-12."""
    torch.manual_seed(0)
    block = RepVGGConvModule(cin, cout, stride, groups, "ReLU").double().eval()
    _randomise_bns(block, 1)
    assert (block.rbr_identity is not None) == (cin == cout and stride == 1)
    fused = copy.deepcopy(block)
    fusion.fuse_block(fused)
    assert fused.deployed and not hasattr(fused, "rbr_dense") and not hasattr(fused, "rbr_identity")
    x = torch.randn(2, cin, 11, 11, dtype=torch.float64)
    with torch.no_grad():
        assert float((block(x) - fused(x)).abs().max()) < 1e-12


def test_fused_backbone_has_upstreams_deploy_keys():
    """After the patch a backbone's state_dict loads strictly into upstream's ``deploy: True`` form."""
    trained = RepVGG("A0", (2, 3, 4), last_channel=512).eval()
    fused, report = fusion.apply(copy.deepcopy(trained), None, 10)
    assert report["blocks_fused"] == len(fusion.training_form_blocks(trained)) == 22
    assert not fusion.training_form_blocks(fused)
    RepVGG("A0", (2, 3, 4), deploy=True, last_channel=512).load_state_dict(fused.state_dict(), strict=True)


def test_not_applicable_elsewhere():
    deploy = RepVGG("A0", (2, 3, 4), deploy=True)
    _, report = fusion.apply(deploy, None, 10)
    assert report["blocks_fused"] == 0 and report["summary"].startswith("not applicable")


def _export_ops(model, hw) -> Counter:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, *hw),), buf, opset_version=10, dynamo=False)
    return Counter(n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node)


def test_export_needs_the_patch():
    """RepVGG-A0's backbone through the pipeline's torch patches exports one Conv per block (22) and no BN or Add;
    without this patch: both branch convs (44), the identity branch's BatchNorm (17 blocks have one) and the adds."""
    backbone = RepVGG("A0", (2, 3, 4), last_channel=512).eval()
    _randomise_bns(backbone, 2)
    plain = _export_ops(backbone, (64, 64))
    assert plain["Conv"] == 44 and plain["BatchNormalization"] == 17 and plain["Add"] == 22 + 17
    model = copy.deepcopy(backbone)
    for mod in patches.TORCH_PATCHES.values():
        model = mod.apply(model, None, 10)
        model = model[0] if isinstance(model, tuple) else model
    fused = _export_ops(model.eval(), (64, 64))
    assert fused["Conv"] == 22 and fused["Relu"] == 22 and not fused["BatchNormalization"] and not fused["Add"]


def test_real_images_before_and_after_fusion(shared):
    """RepVGG-A0_416 (upstream's YAML, seeded random weights: no checkpoint exists), 2 COCO images preprocessed by
    the reference at 416. float64: within 1e-10 (measured 7e-14: the fold is exact algebra). float32, as exported:
    within 1e-5 x max(1, max |output|) (measured 3.9e-6 on scores, 1.2e-5 on box logits up to 4.3), and the fused
    model no farther from the float64 result than twice the unfused float32 model is (measured 1.3 x at most)."""
    cfg = load_config(shared / "reference" / "upstream-configs" / CONFIG)
    model = build_model(cfg)
    assert load_weights(model, cfg, seed=0)["weights"] == "random (seed 0)"
    images = sorted((shared / "data" / "coco-val2017-40" / "images").iterdir())[:IMAGES]
    x = torch.from_numpy(np.concatenate([preprocess_file(p, cfg)[0] for p in images]))
    fused32, report = fusion.apply(copy.deepcopy(model), cfg, 10)
    assert report["blocks_fused"] == 22
    model64 = copy.deepcopy(model).double()
    fused64, _ = fusion.apply(copy.deepcopy(model64), cfg, 10)
    with torch.no_grad():
        out32, got32 = model(x), fused32(x)
        out64, got64 = model64(x.double()), fused64(x.double())
    for name, want32, have32, want64, have64 in zip(model.output_names, out32, got32, out64, got64):
        assert float((want64 - have64).abs().max()) < 1e-10, name
        scale = max(1.0, float(want64.abs().max()))
        assert float((want32 - have32).abs().max()) <= 1e-5 * scale, name
        own = float((want32.double() - want64).abs().max())
        assert float((have32.double() - want64).abs().max()) <= 2 * own + 1e-7, name
