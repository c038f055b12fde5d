"""The NanoDet-Plus reference (GhostPAN + NanoDetPlusHead) built from upstream's YAML reproduces upstream.

Golden outputs are upstream's own ([1, N, 112]: per point 80 sigmoid scores then 4 x 8 raw distribution logits,
points in stride order 8, 16, 32, 64, row-major within a level), made from the same ``input.npy``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contracts.errors import UserError
from nanodet_ref.checkpoint import load_weights, read_state_dict
from nanodet_ref.config import load_config, parse_config
from nanodet_ref.ghost_pan import GhostPAN
from nanodet_ref.model import build_model, run_model
from nanodet_ref.pan import BilinearResize
from nanodet_ref.plus_head import NanoDetPlusHead

SIZES = (416, 320)


def upstream_config(shared, size):
    return load_config(shared / "reference" / "upstream-configs" / f"nanodet-plus-m_{size}.yml")


def upstream_layout(out: dict, strides) -> np.ndarray:
    """The toolkit's per-level outputs as upstream's export lays them out: [1, N, C + 4 (reg_max + 1)]."""
    return np.concatenate([np.concatenate([out[f"cls_pred_stride_{s}"], out[f"dis_pred_stride_{s}"]], axis=2)
                           for s in strides], axis=1)


@pytest.fixture(scope="module", params=SIZES)
def plus(request, shared):
    cfg = upstream_config(shared, request.param)
    model = build_model(cfg)
    provenance = load_weights(model, cfg, shared / "weights" / f"nanodet-plus-m-{request.param}.pth")
    assert provenance["kind"] == "checkpoint"
    return request.param, cfg, model


def test_state_dict_keys_shapes_and_order_are_upstreams(shared):
    """Every inference key of upstream's NanoDetPlus, in upstream's order, with its shape and dtype; the aux_*
    training modules are not built."""
    lines = (shared / "reference" / "nanodet-plus-m-state-dict-keys.txt").read_text().splitlines()
    want = [line.split(" ", 1) for line in lines if not line.startswith(("aux_fpn.", "aux_head."))]
    assert len(want) == 645
    model = build_model(upstream_config(shared, 416))
    got = [[k, f"{list(v.shape)} {str(v.dtype).replace('torch.', '')}"] for k, v in model.state_dict().items()]
    assert got == want
    assert isinstance(model.fpn, GhostPAN) and isinstance(model.head, NanoDetPlusHead)
    assert isinstance(model.fpn.upsample, BilinearResize)  # the module the opset-10 resample patch swaps


def test_golden_raw_outputs(plus, shared):
    size, cfg, model = plus
    assert cfg.strides == [8, 16, 32, 64]
    gdirs = sorted((shared / "reference" / "golden" / f"plus-m-{size}").iterdir())
    assert len(gdirs) == 2
    for gdir in gdirs:
        out = run_model(model, np.load(gdir / "input.npy"))
        for (h, w), s in zip(cfg.feature_sizes(), cfg.strides):
            assert out[f"cls_pred_stride_{s}"].shape == (1, h * w, 80)
            assert out[f"dis_pred_stride_{s}"].shape == (1, h * w, 32)
        golden = np.load(gdir / "output.npy")
        assert golden.shape == (1, {416: 3598, 320: 2125}[size], 112)
        ours = upstream_layout(out, cfg.strides)
        assert np.abs(ours - golden).max() < 1e-4, (gdir.name, float(np.abs(ours - golden).max()))


def test_extra_level_is_ceil_of_the_coarsest_input():
    """416 gives a 13x13 stride-32 map and a 7x7 stride-64 one (ceil), 320 gives 10x10 and 5x5; the extra level
    is the sum of two stride-2 modules, one on the reduced C5, one on P5."""
    pan = GhostPAN([116, 232, 464], 96, use_depthwise=True, kernel_size=5, num_extra_level=1,
                   activation="LeakyReLU").eval()
    for side, want in ((416, [52, 26, 13, 7]), (320, [40, 20, 10, 5])):
        feats = [torch.randn(1, c, -(-side // s), -(-side // s)) for c, s in ((116, 8), (232, 16), (464, 32))]
        with torch.no_grad():
            outs = pan(feats)
            reduced = pan.reduce_layers[2](feats[2])
            extra = pan.extra_lvl_in_conv[0](reduced) + pan.extra_lvl_out_conv[0](outs[2])
        assert [o.shape[-1] for o in outs] == want
        assert torch.equal(outs[3], extra)


def plus_raw(size=416, **fpn):
    head = {"name": "NanoDetPlusHead", "num_classes": 80, "input_channel": 96, "feat_channels": 96,
            "stacked_convs": 2, "kernel_size": 5, "strides": [8, 16, 32, 64], "activation": "LeakyReLU",
            "reg_max": 7, "norm_cfg": {"type": "BN"}, "loss": {"loss_qfl": {"beta": 2.0}}}
    neck = {"name": "GhostPAN", "in_channels": [116, 232, 464], "out_channels": 96, "kernel_size": 5,
            "num_extra_level": 1, "use_depthwise": True, "activation": "LeakyReLU", **fpn}
    return {"model": {"arch": {"name": "NanoDetPlus",
                               "backbone": {"name": "ShuffleNetV2", "model_size": "1.0x", "out_stages": [2, 3, 4],
                                            "activation": "LeakyReLU"}, "fpn": neck, "head": head}},
            "data": {"val": {"input_size": [size, size], "keep_ratio": False,
                             "pipeline": {"normalize": [[103.53, 116.28, 123.675], [57.375, 57.12, 58.395]]}}}}


def test_plus_config_sizes_and_levels_are_checked():
    """The extra level takes any size (a stride-2 conv); the upsampled levels must double; the level count is
    inputs + extra levels. Each refusal is one UserError naming what is wrong."""
    for size in (416, 320, 352):
        cfg = parse_config(plus_raw(size))
        assert len(cfg.feature_sizes()) == 4
    with pytest.raises(UserError, match=r"input_size \[400, 400\] does not fit the GhostPAN neck"):
        parse_config(plus_raw(400))  # 50 / 25 / 13: 13 x 2 != 25
    with pytest.raises(UserError, match="has 4 levels but model.arch.fpn.in_channels has 3: one stride"):
        parse_config(plus_raw(416, num_extra_level=0))
    with pytest.raises(UserError, match="upsample_cfg"):
        build_model(parse_config(plus_raw(416, upsample_cfg={"scale_factor": 2, "mode": "nearest"})))


def test_ckpt_gives_the_pth_weights_and_drops_aux_keys(shared, capsys):
    """The training .ckpt (model. + avg_model. copies, aux_* included) loads strictly into the same weights as
    the .pth, saying in one line that 242 training-only keys were dropped."""
    cfg = upstream_config(shared, 416)
    model = build_model(cfg)
    provenance = load_weights(model, cfg, shared / "weights" / "nanodet-plus-m-416.ckpt")
    lines = [line for line in capsys.readouterr().err.splitlines() if "training-only" in line]
    assert len(lines) == 1 and "dropped 242 training-only keys" in lines[0]
    assert provenance["copy"] == "avg_model. (EMA)" and provenance["training_only_keys_dropped"] == 242
    pth = read_state_dict(shared / "weights" / "nanodet-plus-m-416.pth")
    got = model.state_dict()
    assert set(got) == set(pth)
    assert all(torch.equal(got[k], pth[k]) for k in pth)


@pytest.mark.parametrize("config", ["upstream", "plus-m-1.5x-416"])
def test_plus_1_5x_convs_match_the_topology_oracle(shared, config):
    """Built from upstream's 1.5x YAML or the toolkit's own config (no checkpoint exists), the conv kernels (out,
    in per group, kh, kw, groups, stride) are exactly those of the public ncnn export, counted as a multiset."""
    import json
    from collections import Counter

    cfg = load_config(shared / "reference" / "upstream-configs" / "nanodet-plus-m-1.5x_416.yml"
                      if config == "upstream" else config)
    model = build_model(cfg)
    ours = Counter((m.out_channels, m.in_channels // m.groups, *m.kernel_size, m.groups, m.stride[0])
                   for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    oracle = json.loads((shared / "reference" / "topology" / "nanodet-plus-m-1.5x_416.json").read_text())
    theirs = Counter()
    for e in oracle["kernel_multiset"]:
        theirs[(e["out"], e["in_per_group"], e["kh"], e["kw"], e["groups"], e["stride"])] += e["count"]
    assert sum(ours.values()) == oracle["conv_count"] == 110
    assert ours == theirs


def test_preprocessing_from_jpeg_matches_plus_input(shared):
    """keep_ratio False in upstream's YAML: the stretch warp (cv2.warpPerspective with diag(W/w, H/h, 1))
    reproduces upstream's val-pipeline tensor and its warp matrix."""
    import json

    from nanodet_ref.preprocess import preprocess_file

    for size in SIZES:
        cfg = upstream_config(shared, size)
        assert cfg.keep_ratio is False
        for gdir in sorted((shared / "reference" / "golden" / f"plus-m-{size}").iterdir()):
            golden = json.loads((gdir / "detections.json").read_text())
            x, warp, _ = preprocess_file(shared / "data" / "coco-val2017-40" / "images" / golden["image"], cfg)
            assert np.abs(x - np.load(gdir / "input.npy")).max() < 1e-3
            assert np.allclose(warp, np.array(golden["warp_matrix"]))


def test_golden_detections(plus, shared):
    """Upstream's own post-processing (priors at col * stride, no + 0.5; every point to NMS, no per-level cut),
    from upstream's plain YAML with no toolkit section: labels equal, boxes within 0.01 px in input and image
    pixels, scores within 1e-4."""
    import json

    from nanodet_ref.decode import decode
    from nanodet_ref.preprocess import preprocess_file

    size, cfg, model = plus
    assert cfg.prior_offset == 0.0 and cfg.decode["nms_pre"] is None
    for gdir in sorted((shared / "reference" / "golden" / f"plus-m-{size}").iterdir()):
        golden = json.loads((gdir / "detections.json").read_text())
        out = run_model(model, np.load(gdir / "input.npy"))
        _, warp, hw = preprocess_file(shared / "data" / "coco-val2017-40" / "images" / golden["image"], cfg)
        want = golden["detections"]
        assert len(want) > 0
        for key, dets in (("box_input", decode(out, cfg)), ("box_image", decode(out, cfg, warp, hw))):
            assert [d.label for d in dets] == [g["label"] for g in want], (gdir.name, key)
            boxes = np.array([d.box for d in dets]) - np.array([g[key] for g in want])
            assert np.abs(boxes).max() < 0.01, (gdir.name, key, float(np.abs(boxes).max()))
            scores = np.array([d.score for d in dets]) - np.array([g["score"] for g in want])
            assert np.abs(scores).max() < 1e-4, (gdir.name, key)


def test_provenance_says_which_copy_was_used(shared, tmp_path):
    """What goes into the manifest's weights provenance: the plain .pth is ``plain`` with nothing dropped; a
    training checkpoint holding only the ``model.`` copy (no EMA) says so, with its 242 aux keys dropped."""
    cfg = upstream_config(shared, 416)
    pth = shared / "weights" / "nanodet-plus-m-416.pth"
    provenance = load_weights(build_model(cfg), cfg, pth)
    assert provenance["copy"] == "plain" and provenance["training_only_keys_dropped"] == 0
    ckpt = torch.load(shared / "weights" / "nanodet-plus-m-416.ckpt", map_location="cpu", weights_only=True)
    only_model = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    torch.save({"state_dict": only_model, "epoch": 3}, tmp_path / "no-ema.ckpt")
    model = build_model(cfg)
    provenance = load_weights(model, cfg, tmp_path / "no-ema.ckpt")
    assert provenance["copy"] == "model." and provenance["training_only_keys_dropped"] == 242
    want = read_state_dict(pth)
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
