"""Structural oracles: the deployed graph of each model, built from upstream's unchanged YAML with seeded random
weights, has exactly the convolution kernels of a public export of the official model.

"Deployed graph": the toolkit's own ``onnx`` stage, in memory: the reference model with the seeded random init,
every torch-level export patch applied in the pipeline's order (RepVGG's branches folded by
``repvgg_deploy_fusion``), exported at opset 10 in eval mode, which folds every BatchNorm into its conv. Each
conv counts as (out, in per group, kh, kw, groups, stride, fused activation), compared as a multiset with
``validation.zoo.oracle``: the activation is the op alone consuming the conv's output (ncnn fuses exactly
those); the fixed depthwise filters the resample patch adds for the PAN's bilinear x2 (ncnn's Interp) are left out
and counted. Oracles (``<shared>/reference/topology/*.json``: ncnn exports) for NanoDet-g, EfficientNet-Lite0_320 /
Lite1_416 / Lite2_512, RepVGG-A0_416 and NanoDet-Plus-m-1.5x_416; NanoDet-g has a second one, the TFJS graph the
peer project published (``vladmandic-nanodet-g-topology.json``: Conv2D nodes, HWIO kernels, bias Add and
LeakyRelu as separate nodes), read here by ``peer_kernels``.
"""
from __future__ import annotations

import functools
import io
import json
import warnings
from collections import Counter

import onnx
import pytest
import torch

import patches
from nanodet_ref.checkpoint import random_init
from nanodet_ref.config import load_config
from nanodet_ref.model import build_model
from validation.zoo.oracle import graph_kernels, oracle_kernels

SEED = 0
CALIBRATION_WH = (64, 64)   # the BN statistics of the random init: any size gives the same graph, this is cheap

ORACLES = {  # upstream config stem -> (ncnn oracle stem, its conv count)
    "nanodet-g": ("nanodet-g", 34),
    "nanodet-EfficientNet-Lite0_320": ("nanodet-ELite0_320", 66),
    "nanodet-EfficientNet-Lite1_416": ("nanodet-ELite1_416", 87),
    "nanodet-EfficientNet-Lite2_512": ("nanodet-ELite2_512", 93),
    "nanodet-RepVGG-A0_416": ("nanodet-RepVGG-A0_416", 34),
    "nanodet-plus-m-1.5x_416": ("nanodet-plus-m-1.5x_416", 110),
}
RESAMPLE_FILTERS = {"nanodet-plus-m-1.5x_416": 2}  # GhostPAN: 2 upsamples; the legacy PAN too (default below)


def export_deployed(cfg) -> onnx.ModelProto:
    """The ``onnx`` stage's graph for ``cfg`` with seeded random weights, in memory."""
    model = build_model(cfg)
    random_init(model, SEED, CALIBRATION_WH)
    for mod in patches.TORCH_PATCHES.values():
        model = mod.apply(model, cfg, 10)
        model = model[0] if isinstance(model, tuple) else model
    model.eval()
    w, h = cfg.input_size
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, h, w),), buf, input_names=["input"], opset_version=10,
                          do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@functools.lru_cache(maxsize=None)
def deployed_kernels(config_path: str, tmp_dir: str) -> tuple[Counter, int, Counter]:
    """(conv multiset, resample filters left out, op counts) of the deployed graph of a config, once per session."""
    proto = export_deployed(load_config(config_path))
    path = f"{tmp_dir}/{config_path.rsplit('/', 1)[-1]}.onnx"
    onnx.save(proto, path)
    kernels, filters = graph_kernels(path)
    return kernels, filters, Counter(n.op_type for n in proto.graph.node)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("deployed"))


def difference(ours: Counter, theirs: Counter) -> str:
    def shown(c):
        return ", ".join(f"{n}x {k}" for k, n in sorted(c.items(), key=str)[:6]) or "none"
    return f"in the oracle, not ours: {shown(theirs - ours)}; ours, not in the oracle: {shown(ours - theirs)}"


@pytest.mark.parametrize("stem", list(ORACLES))
def test_deployed_convs_equal_the_ncnn_oracle(stem, shared, export_dir):
    oracle_stem, count = ORACLES[stem]
    oracle = shared / "reference" / "topology" / f"{oracle_stem}.json"
    ours, filters, ops = deployed_kernels(str(shared / "reference" / "upstream-configs" / f"{stem}.yml"), export_dir)
    theirs = oracle_kernels(oracle)
    assert sum(theirs.values()) == json.loads(oracle.read_text())["conv_count"] == count
    assert ops["BatchNormalization"] == 0, "every BatchNorm must be folded into its conv"
    assert filters == RESAMPLE_FILTERS.get(stem, 2)
    assert ours == theirs, difference(ours, theirs)


TF_ACTIVATIONS = {"LeakyRelu": "LeakyReLU", "Relu": "ReLU", "Relu6": "Clip"}
TF_PASS_THROUGH = {"Add", "AddV2", "BiasAdd", "Transpose", "Identity"}   # bias add and layout moves


def peer_kernels(topology: dict) -> Counter:
    """The Conv2D / DepthwiseConv2dNative kernels of a TFJS graph model as (out, in per group, kh, kw, groups,
    stride, activation): the kernel is the Const input (HWIO; depthwise HWCM), the stride the H entry of
    ``strides`` in the node's data_format, the activation the first op after a chain of single consumers that
    only add a bias or move the layout."""
    nodes = {n["name"]: n for n in topology["modelTopology"]["node"]}
    consumers: dict[str, list] = {}
    for n in nodes.values():
        for name in n.get("input", []):
            consumers.setdefault(name.split(":")[0].lstrip("^"), []).append(n)
    kernels = Counter()
    for n in nodes.values():
        if n["op"] not in ("Conv2D", "DepthwiseConv2dNative"):
            continue
        const = nodes[n["input"][1].split(":")[0]]
        kh, kw, cin, cout = (int(d["size"]) for d in const["attr"]["value"]["tensor"]["tensorShape"]["dim"])
        groups, in_per_group = (1, cin) if n["op"] == "Conv2D" else (cin, 1)
        out = cout if n["op"] == "Conv2D" else cin * cout
        layout = n["attr"].get("data_format", {}).get("s", "")
        strides = [int(s) for s in n["attr"]["strides"]["list"]["i"]]
        stride = strides[2] if layout == "TkNIVw==" else strides[1]   # base64 "NCHW"
        act, cur = None, n
        while len(consumers.get(cur["name"], [])) == 1:
            cur = consumers[cur["name"]][0]
            if cur["op"] in TF_ACTIVATIONS:
                act = TF_ACTIVATIONS[cur["op"]]
                break
            if cur["op"] not in TF_PASS_THROUGH:
                break
        kernels[(out, in_per_group, kh, kw, groups, stride, act)] += 1
    return kernels


def test_g_deployed_convs_equal_the_peer_tfjs_graph(shared, export_dir):
    """NanoDet-g's second oracle: the peer's TFJS graph (34 Conv2D, 28 of them followed by LeakyRelu)."""
    topology = json.loads((shared / "reference" / "vladmandic-nanodet-g-topology.json").read_text())
    theirs = peer_kernels(topology)
    ours, _, _ = deployed_kernels(str(shared / "reference" / "upstream-configs" / "nanodet-g.yml"), export_dir)
    assert sum(theirs.values()) == 34 and sum(n for k, n in theirs.items() if k[-1] == "LeakyReLU") == 28
    assert ours == theirs, difference(ours, theirs)
