"""The PyTorch reference reproduces upstream: golden outputs, COCO AP, NanoDet-g topology, strict loading."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from nanodet_ref.checkpoint import load_weights
from nanodet_ref.config import load_config
from nanodet_ref.decode import decode, softmax_integral
from nanodet_ref.model import build_model, run_model
from nanodet_ref.preprocess import preprocess_file


@pytest.fixture(scope="module", params=["m-416", "m-320"])
def loaded(request, shared):
    cfg = load_config(request.param)
    model = build_model(cfg)
    provenance = load_weights(model, cfg)
    assert provenance["kind"] == "checkpoint"
    return cfg, model


def golden_dirs(shared, name):
    dirs = sorted((shared / "reference" / "golden" / name).iterdir())
    assert dirs, "no golden outputs"
    return dirs


def test_golden_raw_outputs_and_detections(loaded, shared):
    cfg, model = loaded
    for gdir in golden_dirs(shared, cfg.name):
        out = run_model(model, np.load(gdir / "input.npy"))
        for s in cfg.strides:
            scores = out[f"cls_pred_stride_{s}"][0]
            dist = softmax_integral(out[f"dis_pred_stride_{s}"][0], cfg.reg_max)
            assert np.abs(scores - np.load(gdir / f"scores_s{s}.npy")).max() < 1e-4
            assert np.abs(dist - np.load(gdir / f"distances_s{s}.npy")).max() < 1e-4
        golden = json.loads((gdir / "detections.json").read_text())
        image = shared / "data" / "coco-val2017-40" / "images" / golden["image"]
        _, warp, hw = preprocess_file(image, cfg)
        for key, dets in (("box_input", decode(out, cfg)), ("box_image", decode(out, cfg, warp, hw))):
            want = golden["detections"]
            assert [d.label for d in dets] == [g["label"] for g in want]
            assert np.abs(np.array([d.box for d in dets]) - np.array([g[key] for g in want])).max() < 0.01
            assert np.abs(np.array([d.score for d in dets]) - np.array([g["score"] for g in want])).max() < 1e-4


def test_preprocessing_from_jpeg_matches_golden_input(shared):
    for name in ("m-416", "m-320"):
        cfg = load_config(name)
        for gdir in golden_dirs(shared, name):
            golden = json.loads((gdir / "detections.json").read_text())
            x, warp, _ = preprocess_file(shared / "data" / "coco-val2017-40" / "images" / golden["image"], cfg)
            assert np.abs(x - np.load(gdir / "input.npy")).max() < 1e-3
            assert np.allclose(warp, np.array(golden["warp_matrix"]))


@pytest.mark.parametrize("name,expected", [("m-416", 0.329), ("m-320", 0.303),
                                           ("plus-m-416", 0.3972), ("plus-m-320", 0.3502)])
def test_reference_coco_ap_matches_published_table(shared, name, expected):
    from nanodet_ref.inference import reference_detections
    from nanodet_ref.preprocess import list_images
    from validation.coco_ap import CocoAnnotations

    cfg = load_config(name)
    model = build_model(cfg)
    load_weights(model, cfg)
    root = shared / "data" / "coco-val2017-40"
    coco = CocoAnnotations(root / "annotations" / "instances_val2017_40.json")
    ap = coco.evaluate(reference_detections(cfg, model, list_images(root / "images")))["ap"]
    assert abs(ap - expected) <= 0.002, ap


def used_conv_kernels_hwio(model, cfg) -> Counter:
    """Shapes (TF layout HWIO) of the conv kernels a forward pass uses; BN folds into them, adding none."""
    shapes = []
    hooks = [m.register_forward_hook(lambda mod, i, o: shapes.append(tuple(mod.weight.shape)))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    w, h = cfg.input_size
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    for hk in hooks:
        hk.remove()
    return Counter((kh, kw, i, o) for o, i, kh, kw in shapes)


def test_g416_random_weights_match_peer_topology(shared):
    cfg = load_config("g-416")
    model = build_model(cfg)
    provenance = load_weights(model, cfg, seed=3)
    assert provenance["weights"] == "random (seed 3)"
    topo = json.loads((shared / "reference" / "vladmandic-nanodet-g-topology.json").read_text())
    want = Counter()
    for node in topo["modelTopology"]["node"]:
        tensor = node.get("attr", {}).get("value", {}).get("tensor", {})
        dims = tensor.get("tensorShape", {}).get("dim", [])
        if node["op"] == "Const" and tensor.get("dtype") == "DT_FLOAT" and len(dims) == 4:
            want[tuple(int(d["size"]) for d in dims)] += 1
    assert sum(want.values()) == 34
    assert used_conv_kernels_hwio(model, cfg) == want


def test_random_weights_are_seeded_and_give_detections():
    cfg = load_config("g-416")
    outs = []
    for _ in range(2):
        model = build_model(cfg)
        load_weights(model, cfg, seed=7)
        outs.append(run_model(model, np.random.default_rng(0).normal(size=(1, 3, 416, 416)).astype(np.float32)))
    for k in outs[0]:
        assert np.array_equal(outs[0][k], outs[1][k])
    assert len(decode(outs[0], cfg)) > 0


@pytest.mark.parametrize("size", ["0.5x", "1.0x", "1.5x", "2.0x"])
def test_shufflenet_sizes_build_and_run(size):
    from nanodet_ref.config import parse_config

    raw = load_config("m-320").raw
    raw = json.loads(json.dumps(raw))
    raw["model"]["arch"]["backbone"]["model_size"] = size
    from nanodet_ref.backbones import SHUFFLENET_CHANNELS

    raw["model"]["arch"]["fpn"]["in_channels"] = SHUFFLENET_CHANNELS[size][1:4]
    raw["toolkit"]["weights"] = None  # the shared checkpoint is 1.0x: a random build for the other sizes
    cfg = parse_config(raw, name=f"m-{size}")
    model = build_model(cfg)
    load_weights(model, cfg, seed=1)
    out = run_model(model, np.zeros((1, 3, 320, 320), np.float32))
    assert out["cls_pred_stride_8"].shape == (1, 1600, 80)
    assert out["dis_pred_stride_32"].shape == (1, 100, 32)
