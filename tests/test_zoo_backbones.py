"""EfficientNet-Lite and RepVGG backbones (nanodet_ref/efficientnet_lite.py, repvgg.py), the backbone table, and
ReLU6 (ONNX Clip) through --backend tf_nhwc.

The key names, counts and output channels asserted here are those of upstream's own classes (RangiLyu/nanodet
be9b4a9, built and compared outside the project: same keys in the same order, outputs equal to 0.0 with the
same weights, for lite0-lite4 and all 13 RepVGG archs in both forms).
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto, helper, numpy_helper

from contracts.errors import UserError
from nanodet_ref import config as config_module
from nanodet_ref.backbone_table import BACKBONE_BUILDERS, backbone_class, pretrain_note
from nanodet_ref.backbones import build_backbone
from nanodet_ref.efficientnet_lite import LITE_PARAMS, EfficientNetLite
from nanodet_ref.repvgg import ARCHS, RepVGG

LITE = {  # model_name -> (out channels at stages 2, 4, 6; state_dict entries)
    "efficientnet_lite0": ([40, 112, 320], 288),
    "efficientnet_lite1": ([40, 112, 320], 378),
    "efficientnet_lite2": ([48, 120, 352], 378),
    "efficientnet_lite3": ([48, 136, 384], 432),
    "efficientnet_lite4": ([56, 160, 448], 540),
}


def test_the_table_is_the_one_list():
    assert config_module.BACKBONES == tuple(BACKBONE_BUILDERS)
    assert set(BACKBONE_BUILDERS) == {"ShuffleNetV2", "CustomCspNet", "EfficientNetLite", "RepVGG"}
    assert backbone_class("EfficientNetLite") is EfficientNetLite and backbone_class("RepVGG") is RepVGG
    with pytest.raises(UserError, match="unknown backbone 'MobileNetV2' .*EfficientNetLite, RepVGG"):
        build_backbone({"name": "MobileNetV2"})
    with pytest.raises(UserError, match="backbone RepVGG: bad arguments"):
        build_backbone({"name": "RepVGG", "arch": "A0", "pretrain": True})   # upstream's RepVGG has no pretrain


@pytest.mark.parametrize("name", list(LITE))
def test_efficientnet_lite_widths_and_keys(name):
    channels, entries = LITE[name]
    net = EfficientNetLite(name, (2, 4, 6), "ReLU6").eval()
    sd = net.state_dict()
    assert len(sd) == entries and net.out_channels() == channels
    assert "blocks.0.0._expand_conv.weight" not in sd     # stage 0 has expand ratio 1
    for key in ("stem.0.weight", "stem.1.running_var", "blocks.0.0._depthwise_conv.weight", "blocks.1.0._bn0.weight",
                "blocks.1.0._expand_conv.weight", "blocks.6.0._project_conv.weight", "blocks.6.0._bn2.bias"):
        assert key in sd, key
    assert all(bn.eps == 1e-3 for bn in net.modules() if isinstance(bn, torch.nn.BatchNorm2d))
    with torch.no_grad():
        outs = net(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == channels and [o.shape[-1] for o in outs] == [8, 4, 2]


def test_efficientnet_lite_activation_reaches_the_stem_only():
    """Upstream passes ``activation`` to the stem and builds every MBConv block with its default ReLU6."""
    net = EfficientNetLite("efficientnet_lite0", (2, 4, 6), "LeakyReLU")
    assert isinstance(net.stem[2], torch.nn.LeakyReLU)
    assert {type(b._relu) for stage in net.blocks for b in stage} == {torch.nn.ReLU6}
    with pytest.raises(UserError, match="unknown EfficientNetLite model_name 'efficientnet_lite9'"):
        EfficientNetLite("efficientnet_lite9")
    with pytest.raises(UserError, match="out_stages"):
        EfficientNetLite("efficientnet_lite0", (2, 7))
    assert set(LITE) == set(LITE_PARAMS)


def test_pretrain_never_downloads(monkeypatch):
    """``pretrain: True`` (upstream's default for EfficientNetLite): nothing is fetched, and the seeded random
    weights' provenance, which the manifest records, says so."""
    import torch.hub
    import torch.utils.model_zoo

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.utils.model_zoo, "load_url", refuse)
    from contracts.paths import shared_path
    from nanodet_ref.checkpoint import use_random_weights
    from nanodet_ref.config import parse_config
    from nanodet_ref.model import build_model

    path = shared_path("reference", "upstream-configs", "nanodet-EfficientNet-Lite1_416.yml")
    if path is None:
        pytest.skip("shared folder absent")
    raw = yaml.safe_load(path.read_text())
    assert raw["model"]["arch"]["backbone"]["pretrain"] is True
    raw["data"]["val"]["input_size"] = [64, 64]   # a cheap random init; the weights' origin is the point
    cfg = parse_config(raw, name="lite1")
    provenance = use_random_weights(build_model(cfg), cfg, 0, "test")
    assert "nothing was downloaded" in provenance["backbone_pretrain"]
    assert pretrain_note({"name": "EfficientNetLite", "model_name": "efficientnet_lite0"})   # upstream default True
    assert pretrain_note({"name": "EfficientNetLite", "pretrain": False}) is None
    assert pretrain_note({"name": "RepVGG", "arch": "A0"}) is None and pretrain_note({"name": "CustomCspNet"}) is None


REPVGG = {  # arch -> (stage 1-4 channels with no last_channel, training-form entries, grouped blocks)
    "A0": ([48, 96, 192, 1280], 349, 0), "A1": ([64, 128, 256, 1280], 349, 0),
    "A2": ([96, 192, 384, 1408], 349, 0), "B0": ([64, 128, 256, 1280], 451, 0),
    "B1g2": ([128, 256, 512, 2048], 451, 13),
}


@pytest.mark.parametrize("arch", list(REPVGG))
def test_repvgg_widths_keys_and_groups(arch):
    channels, entries, grouped = REPVGG[arch]
    net = RepVGG(arch, (1, 2, 3, 4))
    sd = net.state_dict()
    assert len(sd) == entries
    for key in ("stage0.rbr_dense.0.weight", "stage0.rbr_dense.1.running_mean", "stage0.rbr_1x1.0.weight",
                "stage1.1.rbr_identity.weight", "stage4.0.rbr_1x1.1.bias"):
        assert key in sd, key
    assert "stage1.0.rbr_identity.weight" not in sd   # stride 2: no identity branch
    blocks = [m for m in net.modules() if type(m).__name__ == "RepVGGConvModule"]
    assert sum(b.groups > 1 for b in blocks) == grouped
    assert [getattr(net, f"stage{i}")[-1].out_channels for i in range(1, 5)] == channels
    deploy = RepVGG(arch, (1, 2, 3, 4), deploy=True).state_dict()
    assert len(deploy) == 2 * len(blocks) and all(".rbr_reparam." in k for k in deploy)


def test_repvgg_last_channel_and_refusals():
    assert RepVGG("A0", (2, 3, 4), last_channel=512).stage4[0].out_channels == 512
    assert len(ARCHS) == 13
    with pytest.raises(UserError, match="unknown RepVGG arch 'C0'"):
        RepVGG("C0")
    with pytest.raises(UserError, match="out_stages"):
        RepVGG("A0", (0, 1))


# ---------------------------------------------------------------- ReLU6 = Clip through --backend tf_nhwc

def _clip_model(opset: int, lo, hi) -> onnx.ModelProto:
    """input -> Clip(lo, hi) -> y (an absent bound: None)."""
    inits = []
    if opset < 11:
        clip = helper.make_node("Clip", ["input"], ["y"], **{k: v for k, v in (("min", lo), ("max", hi))
                                                              if v is not None})
    else:
        names = []
        for name, v in (("lo", lo), ("hi", hi)):
            if v is not None:
                inits.append(numpy_helper.from_array(np.array(v, np.float32), name))
            names.append(name if v is not None else "")
        clip = helper.make_node("Clip", ["input", *names], ["y"])
    graph = helper.make_graph([clip], "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("opset,lo,hi,tf_op", [(10, 0.0, 6.0, "Relu6"), (10, -1.0, 2.0, "Maximum"),
                                              (11, 0.0, 6.0, "Relu6"), (11, None, 2.0, "Minimum")])
def test_tf_nhwc_translates_clip_exactly(tmp_path, opset, lo, hi, tf_op):
    """ReLU6 exports as Clip(0, 6) (attributes at opset 10, inputs from 11): tf_nhwc gives onnxruntime's numbers
    bit for bit, as relu6 (which TFJS fuses into the conv) where the bounds are 0 and 6."""
    import onnxruntime as ort
    import tensorflow as tf

    from converters import backend_tf_nhwc as B

    path = tmp_path / "clip.onnx"
    onnx.save(_clip_model(opset, lo, hi), str(path))
    x = np.random.default_rng(1).normal(0, 5, size=(1, 3, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"input": x})[0]
    module, _, _ = B.build_module(path)
    fn = module.serve.get_concrete_function()
    got = fn(tf.constant(x.transpose(0, 2, 3, 1)))["y"].numpy()
    assert np.array_equal(got, want) and (want == hi).any() and (want == lo).any() == (lo is not None)
    assert tf_op in [op.type for op in fn.graph.get_operations()]



def test_random_weights_of_a_deep_backbone_keep_float32_noise_small(shared):
    """The seeded random init keeps a deep net well conditioned (BN biases at +1 weight, see
    ``nanodet_ref.checkpoint.random_init``): EfficientNet-Lite2, the deepest config, in PyTorch float32 stays
    within a fifth of the fp32 tolerance (atol + rtol x max |output|) of float64 on two sample photos, so two
    float32 runtimes agree within it. Measured at 96x96 (cheap; the noise grows with depth, not size): 0.016 of
    it; with the BN biases centred at 0, 0.439 (and at the config's 512, 1.30: every stage of its conversion
    failed validation)."""
    from nanodet_ref.checkpoint import random_init
    from nanodet_ref.config import parse_config
    from nanodet_ref.model import build_model
    from nanodet_ref.preprocess import preprocess_file
    from nanodet_ref.samples import sample_photos
    from validation.evaluate import DEFAULTS

    if not sample_photos():
        pytest.skip("scikit-image's sample photos are not installed")
    raw = yaml.safe_load((shared / "reference" / "upstream-configs" / "nanodet-EfficientNet-Lite2_512.yml").read_text())
    raw["data"]["val"]["input_size"] = [96, 96]
    cfg = parse_config(raw, name="lite2-96")
    model = build_model(cfg)
    random_init(model, 0, cfg.input_size)
    x = torch.from_numpy(np.concatenate([preprocess_file(p, cfg)[0] for p in sample_photos()[:2]]))
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        pairs = list(zip(model(x), model64(x.double())))
    atol, rtol = DEFAULTS["raw_atol"], DEFAULTS["raw_rtol"]
    worst = max(float((a.double() - b).abs().max()) / (atol + rtol * float(b.abs().max())) for a, b in pairs)
    assert worst < 0.2, worst
