"""Equivalence tests of the export patches (patches/pan_resample_opset10.py, channel_shuffle_4d.py,
dead_branch_channels.py, resize_half_pixel.py), each with a counterpart showing what goes wrong without it."""
from __future__ import annotations

import copy
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import patches
from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from nanodet_ref.config import load_config
from nanodet_ref.pan import PAN, BilinearResize
from patches import channel_shuffle_4d, dead_branch_channels
from patches import pan_resample_opset10 as pan_patch
from patches import resize_half_pixel

EXACT = 1e-5


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_registered():
    assert patches.TORCH_PATCHES["pan_resample_opset10"] is pan_patch
    assert patches.ONNX_PATCHES["resize_half_pixel"] is resize_half_pixel
    assert patches.TORCH_PATCHES["channel_shuffle_4d"] is channel_shuffle_4d
    assert patches.TORCH_PATCHES["dead_branch_channels"] is dead_branch_channels


def test_every_patch_module_is_listed_with_its_entry_point():
    """patches/__init__ lists its patches explicitly: a module in patches/ left out of the lists, or a listed
    name whose module is missing (an import error, where a mistyped name used to be skipped silently), fails."""
    on_disk = {p.stem for p in (PROJECT_ROOT / "patches").glob("*.py") if p.stem != "__init__"}
    assert set(patches.TORCH_PATCHES) | set(patches.ONNX_PATCHES) == on_disk
    assert not set(patches.TORCH_PATCHES) & set(patches.ONNX_PATCHES)
    assert all(callable(getattr(m, "apply", None)) for m in patches.TORCH_PATCHES.values())
    assert all(callable(getattr(m, "rewrite", None)) for m in patches.ONNX_PATCHES.values())


# ---------------------------------------------------------------- channel_shuffle_4d


@pytest.mark.parametrize("shape", [(1, 116, 52, 52), (2, 8, 3, 5), (1, 464, 13, 13)])
def test_shuffle_4d_is_bitwise_channel_shuffle(shape):
    from nanodet_ref.layers import channel_shuffle
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(6))
    assert torch.equal(channel_shuffle_4d.shuffle_4d(x), channel_shuffle(x, 2))


def _reshape_ranks(proto) -> list[int]:
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    return [int(consts[n.input[1]].size) for n in proto.graph.node if n.op_type == "Reshape" and n.input[1] in consts]


def test_shuffle_4d_patch_removes_5d_reshapes_and_is_exact():
    """The real ShuffleNetV2 backbone (seeded weights): unpatched export has 5-D Reshapes, patched none;
    outputs bit-identical."""
    from nanodet_ref.backbones import ShuffleNetV2
    cfg = load_config("m-416")
    torch.manual_seed(0)
    model = nn.Module()
    model.backbone = ShuffleNetV2(model_size="1.0x", activation="LeakyReLU").eval()
    model.forward = lambda x: tuple(model.backbone(x))
    x = np.random.default_rng(7).normal(size=(1, 3, 64, 64)).astype(np.float32)
    assert 5 in _reshape_ranks(onnx.load_from_string(_export_bytes(model, x, 10)))
    patched = channel_shuffle_4d.apply(copy.deepcopy(model), cfg, 10)
    patched.forward = lambda x: tuple(patched.backbone(x))
    assert all(type(b.shuffle).__name__ == "Shuffle4d" for b in patched.backbone.stage2)
    ranks = _reshape_ranks(onnx.load_from_string(_export_bytes(patched, x, 10)))
    assert ranks and max(ranks) == 4
    with torch.no_grad():
        for a, b in zip(model(torch.from_numpy(x)), patched(torch.from_numpy(x))):
            assert torch.equal(a, b)


@pytest.mark.parametrize("hw", [(13, 13), (26, 26), (10, 10), (7, 12), (1, 5), (2, 2)])
def test_conv_upsample_equals_bilinear_x2(hw):
    x = torch.randn(2, 5, *hw, generator=torch.Generator().manual_seed(1)) * 10
    with torch.no_grad():
        want, got = BilinearResize(2.0)(x), pan_patch.ConvUpsample()(x)
    assert got.shape == want.shape
    assert _max_diff(got, want) < EXACT


@pytest.mark.parametrize("hw", [(52, 52), (26, 26), (40, 40), (13, 13), (6, 9)])
def test_avgpool_equals_bilinear_x05(hw):
    x = torch.randn(2, 5, *hw, generator=torch.Generator().manual_seed(2)) * 10
    with torch.no_grad():
        want, got = BilinearResize(0.5)(x), pan_patch.AvgPoolDownsample()(x)
    assert got.shape == want.shape
    assert _max_diff(got, want) < EXACT


def test_check_refuses_a_replacement_that_differs():
    with pytest.raises(UserError, match="pan_resample_opset10"):
        pan_patch._check_equal(BilinearResize(2.0), nn.Upsample(scale_factor=2.0, mode="nearest"), [(4, 4)], "x2")


def test_apply_reports_what_it_finds_and_refuses_what_it_cannot_make_exact():
    """No bilinear module: not applicable, said so; a bilinear module of another factor or with align_corners
    True anywhere in the model: a UserError naming it (it has no exact opset-10 form)."""
    cfg = load_config("m-416")
    model, report = pan_patch.apply(nn.Sequential(nn.Conv2d(3, 3, 1)), cfg, 10)
    assert report["replaced"] == {} and report["summary"].startswith("not applicable")
    for odd in (BilinearResize(3.0), nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True)):
        model = nn.Module()
        model.neck = nn.Sequential(nn.Identity(), odd)
        with pytest.raises(UserError, match=r"neck\.1 is a bilinear resize"):
            pan_patch.apply(model, cfg, 10)


def test_apply_finds_half_pixel_x2_modules_anywhere():
    """Any half-pixel bilinear x2 module (BilinearResize or nn.Upsample, inside Sequentials too) is replaced,
    and the result equals the original."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Upsample(scale_factor=2, mode="bilinear"),
                          nn.Sequential(BilinearResize(2.0), BilinearResize(0.5))).eval()
    x = torch.randn(1, 3, 13, 13, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x)
    patched, report = pan_patch.apply(copy.deepcopy(model), _TinyCfg(), 10)
    assert report["replaced"] == {"1": "bilinear x2", "2.0": "bilinear x2", "2.1": "bilinear x0.5"}
    assert pan_patch.resample_modules(patched) == []
    with torch.no_grad():
        assert _max_diff(patched(x), want) < EXACT


class _PanOnly(nn.Module):
    """The real PAN class (small channels) with three pyramid inputs sliced from one tensor."""

    def __init__(self, pan):
        super().__init__()
        self.pan = pan
        self.fpn = pan  # apply() looks for model.fpn

    def forward(self, x):  # x: [1, 8, 16, 16] -> levels 16x16, 8x8, 4x4
        feats = [x[:, :4], nn.functional.avg_pool2d(x[:, 4:6], 2), nn.functional.avg_pool2d(x[:, 6:8], 4)]
        return tuple(self.pan(feats))


class _TinyCfg:
    def feature_sizes(self):
        return [(16, 16), (8, 8), (4, 4)]


def _tiny_pan():
    torch.manual_seed(0)
    return _PanOnly(PAN([4, 2, 2], 3)).eval()


def _onnx_run(model: nn.Module, x: np.ndarray, opset: int) -> list[np.ndarray]:
    buf = io.BytesIO()
    torch.onnx.export(model, torch.from_numpy(x), buf, dynamo=False, opset_version=opset,
                      input_names=["input"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})


def test_opset10_onnxruntime_needs_the_patch():
    """Without the patch onnxruntime runs the opset-10 Resize 'asymmetric' and disagrees with PyTorch."""
    model = _tiny_pan()
    x = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32) * 5
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(x))]
    unpatched = _onnx_run(model, x, 10)
    assert max(_max_diff(a, b) for a, b in zip(unpatched, want)) > 1e-3
    patched_model, _ = pan_patch.apply(copy.deepcopy(model), _TinyCfg(), 10)
    assert isinstance(model.fpn.upsample, BilinearResize)  # the model given is changed, not the original
    ops = {n.op_type for n in onnx.load_from_string(_export_bytes(patched_model, x, 10)).graph.node}
    assert "Pad" not in ops and not any(
        n.op_type == "Resize" and b"linear" in [a.s for a in n.attribute]
        for n in onnx.load_from_string(_export_bytes(patched_model, x, 10)).graph.node)
    patched = _onnx_run(patched_model, x, 10)
    assert max(_max_diff(a, b) for a, b in zip(patched, want)) < EXACT


def _export_bytes(model, x, opset):
    buf = io.BytesIO()
    torch.onnx.export(model, torch.from_numpy(x), buf, dynamo=False, opset_version=opset, input_names=["input"])
    return buf.getvalue()


@pytest.mark.slow
def test_real_model_real_image_opset10(shared):
    """m-416 with its real checkpoint on a real COCO image: PyTorch patched == unpatched; opset-10 ONNX too."""
    from nanodet_ref.checkpoint import load_weights
    from contracts.signature import output_names
    from nanodet_ref.model import build_model, run_model
    from nanodet_ref.preprocess import preprocess_file

    cfg = load_config("m-416")
    model = build_model(cfg)
    load_weights(model, cfg)
    image = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[0]
    x, _, _ = preprocess_file(image, cfg)
    want = run_model(model, x)
    patched, _ = pan_patch.apply(copy.deepcopy(model), cfg, 10)
    got = run_model(patched, x)
    assert max(_max_diff(got[k], want[k]) for k in want) < EXACT
    buf = io.BytesIO()
    torch.onnx.export(patched, torch.from_numpy(x), buf, dynamo=False, opset_version=10, input_names=["input"],
                      output_names=output_names(cfg.strides))
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    outs = dict(zip(output_names(cfg.strides), sess.run(None, {"input": x})))
    # whole-network float32 reordering in onnxruntime: the same bound the validation uses (raw_atol 1e-4)
    assert max(_max_diff(outs[k], want[k]) for k in want) < 1e-4


# ---------------------------------------------------------------- dead_branch_channels


def _block_with_dead_channels(stride: int, dead: list[int], seed: int = 3):
    """A ShuffleV2Block (58 channels out) with trained-looking BN statistics and the given middle channels'
    depthwise kernels set to 1e-20, as in the released checkpoints."""
    from nanodet_ref.backbones import ShuffleV2Block
    gen = torch.Generator().manual_seed(seed)
    block = ShuffleV2Block(24 if stride > 1 else 58, 58, stride, "LeakyReLU")
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))  # c_k != 0: the fold matters
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        block.branch2[3].weight[dead] = 1e-20
    return block.eval()


@pytest.mark.parametrize("stride", [1, 2])
def test_dead_channels_dropped_exactly(stride):
    dead = [0, 7, 28]
    block = _block_with_dead_channels(stride, dead)
    reference = copy.deepcopy(block)
    assert dead_branch_channels.prune_block(block) == len(dead)
    assert block.branch2[0].out_channels == block.branch2[5].in_channels == 29 - len(dead)
    assert block.branch2[3].groups == 29 - len(dead)
    x = torch.randn(2, 24 if stride > 1 else 58, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _max_diff(block(x), reference(x)) < EXACT


def test_dead_channels_need_the_bn_fold():
    """Dropping the channels without moving their constant into the next BN changes the unit's output."""
    block = _block_with_dead_channels(1, [3, 4])
    reference = copy.deepcopy(block)
    dead_branch_channels.prune_block(block)
    x = torch.randn(1, 58, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        block.branch2[6].running_mean.copy_(reference.branch2[6].running_mean)  # undo the fold
        assert _max_diff(block(x), reference(x)) > 1e-2


def test_dead_channels_threshold_and_refusals():
    block = _block_with_dead_channels(1, [])
    with torch.no_grad():
        block.branch2[3].weight[5] = 1e-3  # small but alive: kept
    assert dead_branch_channels.prune_block(block) == 0
    everything = _block_with_dead_channels(1, list(range(29)))
    with pytest.raises(UserError, match="every middle channel"):
        dead_branch_channels.prune_block(everything)


@pytest.mark.slow
def test_dead_channels_real_checkpoint(shared):
    """m-416's real checkpoint: 139 dead middle channels; the patched export computes 24 M fewer multiply-adds
    and its onnxruntime outputs stay within the validation's bound of PyTorch on a real image."""
    from nanodet_ref.checkpoint import load_weights
    from contracts.signature import output_names
    from nanodet_ref.model import build_model, run_model
    from nanodet_ref.preprocess import preprocess_file

    cfg = load_config("m-416")
    model = build_model(cfg)
    load_weights(model, cfg)
    model.eval()
    patched, report = dead_branch_channels.apply(copy.deepcopy(model), cfg, 10)
    assert report["channels_dropped"] == 139 and report["units_changed"] == 15
    assert report["macs_saved"] == 24_232_065
    assert report["summary"] == "139 of 2088 branch channels dropped, 24.2 M multiply-adds saved"
    image = sorted((shared / "data" / "coco-val2017-40" / "images").glob("*.jpg"))[0]
    x, _, _ = preprocess_file(image, cfg)
    want = run_model(model, x)
    assert max(_max_diff(run_model(patched, x)[k], want[k]) for k in want) < EXACT
    buf = io.BytesIO()  # opset 11: the PAN's resize is exact there without its own patch
    torch.onnx.export(patched, torch.from_numpy(x), buf, dynamo=False, opset_version=11, input_names=["input"],
                      output_names=output_names(cfg.strides))
    from validation.pruning_probe import conv_macs
    assert conv_macs(model, torch.from_numpy(x)) - conv_macs(patched, torch.from_numpy(x)) == report["macs_saved"]
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    outs = dict(zip(output_names(cfg.strides), sess.run(None, {"input": x})))
    assert max(_max_diff(outs[k], want[k]) for k in want) < 1e-4


# ---------------------------------------------------------------- resize_half_pixel


def _resize_model(mode: str, in_hw, scales) -> onnx.ModelProto:
    from onnx import TensorProto, helper
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                            coordinate_transformation_mode=mode, name="resize")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, *in_hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, *(int(n * s) for n, s in zip(in_hw, scales))])],
        initializer=[helper.make_tensor("roi", TensorProto.FLOAT, [0], []),
                     helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, *scales])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _mode(model):
    return [a.s for a in model.graph.node[0].attribute if a.name == "coordinate_transformation_mode"][0]


@pytest.mark.parametrize("in_hw,scales", [((13, 13), (2.0, 2.0)), ((52, 52), (0.5, 0.5)), ((5, 7), (2.0, 0.5)),
                                          ((1, 6), (1.0, 2.0))])
def test_resize_rewrite_is_exact(in_hw, scales):
    model = _resize_model("pytorch_half_pixel", in_hw, scales)
    out, report = resize_half_pixel.rewrite(model, None)
    assert report["changed"] == ["resize"] and _mode(out) == b"half_pixel"
    assert _mode(model) == b"pytorch_half_pixel"  # input left untouched
    x = np.random.default_rng(3).normal(size=(1, 2, *in_hw)).astype(np.float32)
    assert _max_diff(_ort(out, x), _ort(model, x)) < 1e-6


def test_resize_rewrite_keeps_length_one_outputs():
    """2 -> 1 on an axis: the modes really differ there, so the node must be kept."""
    model = _resize_model("pytorch_half_pixel", (2, 2), (0.5, 0.5))
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    forced = _resize_model("half_pixel", (2, 2), (0.5, 0.5))
    assert _max_diff(_ort(forced, x), _ort(model, x)) > 0.1
    out, report = resize_half_pixel.rewrite(model, None)
    assert report["changed"] == [] and report["kept"][0]["node"] == "resize"
    assert _mode(out) == b"pytorch_half_pixel"


def test_resize_rewrite_on_torch_export_matches_pytorch():
    """A real PyTorch bilinear module exported at opset 11, its mode forced to pytorch_half_pixel as older
    exporters wrote it: after the rewrite onnxruntime still reproduces PyTorch."""
    model = _tiny_pan()
    x = np.random.default_rng(4).normal(size=(1, 8, 16, 16)).astype(np.float32)
    proto = onnx.load_from_string(_export_bytes(model, x, 11))
    for node in proto.graph.node:
        for attr in node.attribute:
            if node.op_type == "Resize" and attr.name == "coordinate_transformation_mode":
                attr.s = b"pytorch_half_pixel"
    out, report = resize_half_pixel.rewrite(proto, None)
    assert len(report["changed"]) == 4 and not report["kept"]
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(x))]
    got = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert max(_max_diff(a, b) for a, b in zip(got, want)) < EXACT


@pytest.mark.slow
def test_onnx_tf_rejects_pytorch_half_pixel_but_converts_the_rewrite():
    from contracts import tf_environment
    tf_environment.install()
    from onnx_tf.backend import prepare

    model = _resize_model("pytorch_half_pixel", (6, 6), (2.0, 2.0))
    x = np.random.default_rng(5).normal(size=(1, 2, 6, 6)).astype(np.float32)
    with pytest.raises(Exception, match="(?i)pytorch_half_pixel|not supported|coordinate"):
        prepare(model).run(x)
    out, _ = resize_half_pixel.rewrite(model, None)
    got = np.asarray(prepare(out).run(x)[0])
    assert _max_diff(got, _ort(model, x)) < 1e-5
