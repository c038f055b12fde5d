"""Per-tensor localisation (validation/localize): the first tensor where a stage stops computing what PyTorch does.

Small real models throughout: a tiny conv net (Conv+BN+LeakyReLU blocks, a depthwise conv, an upsample and a
concat) exported by torch.onnx.export, and NanoDet-m 320 with seeded random weights for the PAN's opset-10 Resize.
A wrong conversion is planted *inside* each backend (one LeakyRelu's alpha; for tf_nhwc also one conv kernel
transposed) and the localisation must name that ONNX node for the saved_model and the tfjs stage, with the
engine's node beside it, while the node's inputs still agree.
"""
from __future__ import annotations

import subprocess
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contracts.paths import PROJECT_ROOT
from validation.localize import Job, localize_stages
from validation.localize.hook import attach
from validation.localize.report_md import console_lines, markdown_lines
from validation.localize.torch_taps import unqualified

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::torch.jit.TracerWarning")

TARGET = "/blocks.0/act/LeakyRelu"      # the node whose conversion is planted wrong
CONV_TARGET = "/blocks.1/conv/Conv"
SIZE = 40                                # no tensor with C == H == W: onnx2tf layouts can be told apart


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Up(nn.Module):
    """x2 resampling as a module of its own, as NanoDet's PAN has it (nearest, or half-pixel bilinear)."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        extra = {} if self.mode == "nearest" else {"align_corners": False}
        return F.interpolate(x, scale_factor=2.0, mode=self.mode, **extra)


class Tiny(nn.Module):
    """stem conv+BN+act, a depthwise conv, two blocks, upsample x2 (nearest or bilinear), concat, 1x1 head."""

    def __init__(self, mode="nearest"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.LeakyReLU(0.1))
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8)
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.up = Up(mode)
        self.head = nn.Conv2d(16, 4, 1)
        self.output_names = ["out"]

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x)
        for b in self.blocks:
            y = b(y)
        return self.head(torch.cat([x, self.up(y)], 1)).flatten(2).transpose(1, 2)


def tiny_model(mode="nearest") -> Tiny:
    torch.manual_seed(0)
    model = Tiny(mode).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):   # BNs that are no identity: folding them into the conv must show
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return model


def images(n=2, size=SIZE):
    return np.random.default_rng(1).normal(size=(n, 3, size, size)).astype(np.float32)


def export(model, folder, size=SIZE, opset=10):
    """model.onnx and model.sim.onnx (onnxsim, as the onnx_sim stage runs it) in ``folder``."""
    import onnx
    import onnxsim
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(folder / "model.onnx"), input_names=["input"],
                          output_names=model.output_names, opset_version=opset, dynamo=False)
    simplified, ok = onnxsim.simplify(onnx.load(str(folder / "model.onnx")))
    assert ok
    onnx.save(simplified, str(folder / "model.sim.onnx"))
    return folder


def job(folder, model, backend="onnx_tf", n=2) -> Job:
    manifest = {"stages": {"saved_model": {"backend": backend}, "tfjs": {"quantize": "float32"}}}
    return Job(folder, manifest, model, images(n), 1e-4, 1e-4, log=lambda m: None)


# -- scopes and mapping --------------------------------------------------------------------------------------

def test_scope_atoms_are_the_exporters():
    assert unqualified("backbone.stage2.0") == "stage2.0"
    assert unqualified("head.cls_convs.0.0") == "cls_convs.0.0"
    assert unqualified("fpn.upsample") == "upsample"
    assert unqualified("stem") == "stem"


def test_folded_batchnorms_map_onto_their_conv_and_every_tensor_agrees(tmp_path):
    """The exporter folds each BatchNorm into its Conv: the Conv node's output must take the BN's value (else
    every conv output would 'differ' by the BN), and onnxruntime on the exact export agrees everywhere."""
    model = tiny_model()
    result = localize_stages(job(export(model, tmp_path), model), ["onnx"])["onnx"]
    rows = {r[0]: r for r in result["localization"]["tensors"]}
    assert rows["/blocks.0/conv/Conv_output_0"][5] == "pytorch blocks.0.bn"
    assert rows["/stem/stem.0/Conv_output_0"][5] == "pytorch stem.1"
    assert result["first_divergence"] is None
    assert result["localization"]["summary"]["judged_against"]["pytorch"] >= 8


def test_a_resize_onnxruntime_runs_asymmetric_is_named_and_reported(tmp_path):
    """Bilinear x2 at opset 10: onnxruntime samples asymmetric, PyTorch half-pixel. The failing onnx stage gets
    the Resize node as its first divergence (its input still agrees); the passing onnx_sim stage gets null;
    report.md and the console show the chain."""
    model = tiny_model("bilinear")
    folder = export(model, tmp_path)
    stages = {"onnx": {"pass": False, "criteria": "fp32"}, "onnx_sim": {"pass": True, "criteria": "fp32"}}
    attach(stages, "failing", job(folder, model))
    fd = stages["onnx"]["first_divergence"]
    assert (fd["node"], fd["op_type"]) == ("/up/Resize", "Resize")
    assert fd["inputs_max_abs_diff"] <= fd["inputs"][0]["tolerance"] < fd["max_abs_diff"]
    assert fd["chain"][-1]["tensor"] == fd["tensor"] and fd["chain"][-2]["status"] == "agrees"
    assert stages["onnx_sim"]["first_divergence"] is None and "localization" not in stages["onnx_sim"]
    report = {"stages": stages}
    md = "\n".join(markdown_lines(report))
    assert "first divergence: node `/up/Resize` (Resize)" in md and "| DIFFERS |" in md
    lines = console_lines(report)
    assert len(lines) == 1 and lines[0].startswith("  onnx: first divergence at node /up/Resize (Resize)")
    # asked for every stage: a passing stage keeps first_divergence null, what it found goes to localization
    attach(stages, "all", job(folder, model))
    assert stages["onnx_sim"]["first_divergence"] is None
    assert stages["onnx_sim"]["localization"]["intermediate_divergence"]["node"] == "/up/Resize"


def test_an_earlier_stage_is_a_reference_only_where_it_agreed_around_the_tensor(tmp_path):
    """The same bilinear model: onnx-tf converts the Resize half-pixel, as PyTorch computes it, so the SavedModel
    agrees everywhere; the Concat after the Resize has no PyTorch counterpart and onnxruntime's value there is
    wrong (its Resize input was asymmetric), so it must not serve as the reference: no reference, no false
    divergence."""
    model = tiny_model("bilinear")
    folder = export(model, tmp_path)
    result = localize_stages(job(folder, model, "onnx_tf"), ["saved_model"])["saved_model"]
    rows = {r[0]: r for r in result["localization"]["tensors"]}
    assert result["first_divergence"] is None, result["first_divergence"]
    assert rows["/Concat_output_0"][2] == "no reference"
    assert rows["/up/Resize_output_0"][2] == "agrees"


def test_the_pan_upsample_of_an_unpatched_nanodet_export_is_named(tmp_path):
    """NanoDet-m (320, seeded random weights), opset 10 without export patches: the onnx stage's first
    divergence is the PAN's first upsample; with the PAN patch the same localisation finds none."""
    import copy

    from nanodet_ref.checkpoint import use_random_weights
    from nanodet_ref.config import load_config
    from nanodet_ref.model import build_model
    from patches import pan_resample_opset10

    cfg = load_config("m-320")
    model = build_model(cfg)
    use_random_weights(model, cfg, 0, "test")
    w, h = cfg.input_size
    found = {}
    for name, exported in (("none", copy.deepcopy(model)), ("pan", pan_resample_opset10.apply(copy.deepcopy(model),
                                                                                             cfg, 10))):
        exported = exported[0] if isinstance(exported, tuple) else exported
        folder = tmp_path / name
        folder.mkdir()
        with torch.no_grad():
            torch.onnx.export(exported.eval(), (torch.zeros(1, 3, h, w),), str(folder / "model.onnx"),
                              input_names=["input"], output_names=model.output_names, opset_version=10, dynamo=False)
        j = Job(folder, {}, model, images(1, size=h), 1e-4, 1e-4, log=lambda m: None)
        found[name] = localize_stages(j, ["onnx"])["onnx"]["first_divergence"]
    assert found["none"]["node"] == "/fpn/upsample/Resize" and found["none"]["op_type"] == "Resize"
    assert found["pan"] is None


# -- a wrong conversion planted inside each backend -------------------------------------------------------------

def plant_onnx_tf(monkeypatch):
    """onnx-tf's LeakyRelu handler with alpha 0.2 for TARGET."""
    from contracts import tf_environment
    tf_environment.install()
    tf_environment.import_tensorflow()
    import onnx_tf.handlers.backend.leaky_relu as handler
    original = handler.Identity.version_6.__func__

    def version_6(cls, node, **kwargs):
        if node.name == TARGET:
            node.attrs["alpha"] = 0.2
        return original(cls, node, **kwargs)
    monkeypatch.setattr(handler.Identity, "version_6", classmethod(version_6))


def plant_tf_nhwc(monkeypatch, what="alpha"):
    """tf_nhwc's LeakyRelu (exact handler and speed rewrite) with alpha 0.2 for TARGET, or its Conv with the
    kernel's two spatial axes swapped for CONV_TARGET."""
    from converters.tf_nhwc import op_table
    from converters.tf_nhwc.layout import Value

    def wrong_alpha(original):
        def handler(t, tf, node, a):
            return original(t, tf, node, dict(a, alpha=0.2) if node.name == TARGET else a)
        return handler

    def transposed_kernel(original):
        def handler(t, tf, node, a):
            if node.name != CONV_TARGET:
                return original(t, tf, node, a)
            kept = t.values[node.input[1]]
            t.values[node.input[1]] = Value(const=np.ascontiguousarray(kept.const.transpose(0, 1, 3, 2)))
            try:
                return original(t, tf, node, a)
            finally:
                t.values[node.input[1]] = kept
        return handler

    op, wrap = ("LeakyRelu", wrong_alpha) if what == "alpha" else ("Conv", transposed_kernel)
    for table in (op_table.OPS, op_table.REWRITES):
        if op in table:
            monkeypatch.setitem(table, op, wrap(table[op]))


def plant_onnx2tf(monkeypatch, tmp_path):
    """onnx2tf runs in child processes: a sitecustomize on their PYTHONPATH wraps its LeakyRelu converter
    (onnx2tf prefixes node names, hence the suffix match)."""
    folder = tmp_path / "plant"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import onnx2tf.ops.LeakyRelu as handler
        _original = handler.make_node
        def make_node(*, graph_node, **kwargs):
            if graph_node.name.endswith({TARGET!r}):
                graph_node.attrs["alpha"] = 0.2
            return _original(graph_node=graph_node, **kwargs)
        handler.make_node = make_node
    """))
    monkeypatch.setenv("PYTHONPATH", str(folder))


def build_stages(folder, backend):
    """saved_model/ and tfjs/ of the folder's model.sim.onnx, through the backend as planted."""
    from validation.localize import tf_taps, tfjs_taps
    tf_taps.convert(backend, folder / "model.sim.onnx", folder / "saved_model")
    tfjs_taps.convert(folder / "saved_model", folder / "tfjs", None)


def assert_named(result, node, op_type):
    fd = result["first_divergence"]
    assert fd is not None, result["localization"]
    assert (fd["node"], fd["op_type"]) == (node, op_type), fd
    assert fd["engine_node"], fd                     # the engine's own node beside the ONNX one
    judged = [i for i in fd["inputs"] if i["status"] in ("agrees", "DIFFERS")]
    assert all(i["status"] == "agrees" for i in judged), fd["inputs"]
    return fd


@pytest.mark.parametrize("backend", ["onnx_tf", "tf_nhwc"])
def test_a_wrong_leaky_relu_inside_the_backend_is_named(backend, tmp_path, monkeypatch):
    model = tiny_model()
    folder = export(model, tmp_path / "artifact")
    (plant_onnx_tf if backend == "onnx_tf" else plant_tf_nhwc)(monkeypatch)
    build_stages(folder, backend)
    result = localize_stages(job(folder, model, backend), ["saved_model", "tfjs"])
    for stage in ("saved_model", "tfjs"):
        assert_named(result[stage], TARGET, "LeakyRelu")
    assert result["tfjs"]["localization"]["tfjs_backend"] == "wasm"


def test_a_transposed_conv_kernel_inside_tf_nhwc_is_named_and_the_correct_backend_is_clean(tmp_path, monkeypatch):
    model = tiny_model()
    folder = export(model, tmp_path / "artifact")
    clean = localize_stages(job(folder, model, "tf_nhwc"), ["saved_model", "tfjs"])
    assert clean["saved_model"]["first_divergence"] is None and clean["tfjs"]["first_divergence"] is None
    # tfjs's converter fuses the activation into a conv whose output is tapped: such taps are not trusted
    assert any(r[2] == "not reached" and "fused" in r[6] for r in clean["tfjs"]["localization"]["tensors"])
    plant_tf_nhwc(monkeypatch, "kernel")
    build_stages(folder, "tf_nhwc")
    result = localize_stages(job(folder, model, "tf_nhwc"), ["saved_model", "tfjs"])
    assert_named(result["saved_model"], CONV_TARGET, "Conv")
    # TFJS computes the conv and its activation as one fused node, so the first tensor it can show is the
    # activation's: the conv is named as part of that engine node, and as where the divergence may start
    fd = result["tfjs"]["first_divergence"]
    assert fd["node"] == CONV_TARGET or (fd["node"] == "/blocks.1/act/LeakyRelu" and CONV_TARGET in fd["engine_fuses"]
                                         and CONV_TARGET in fd["unjudged_before"]), fd
    assert "_FusedConv2D" in fd["engine_node"]


@pytest.mark.slow
def test_a_wrong_leaky_relu_inside_onnx2tf_is_named(tmp_path, monkeypatch):
    """onnx2tf (two child processes: about 45 s here)."""
    model = tiny_model()
    folder = export(model, tmp_path / "artifact")
    plant_onnx2tf(monkeypatch, tmp_path)
    result = localize_stages(job(folder, model, "onnx2tf"), ["saved_model", "tfjs"])
    for stage in ("saved_model", "tfjs"):
        fd = assert_named(result[stage], TARGET, "LeakyRelu")
        assert fd["max_abs_diff"] > 10 * fd["tolerance"]


# -- the Node runner fetches internal nodes --------------------------------------------------------------------

def test_the_node_runner_fetches_internal_nodes_by_name(tmp_path):
    """``--outputs-file`` lists node names, internal ones included (GraphModel.execute(feeds, names))."""
    import json

    from validation.localize import tf_taps, tfjs_taps
    from validation.runners.tfjs_node import run_tfjs_graph

    model = tiny_model()
    folder = export(model, tmp_path)
    tf_taps.convert("onnx_tf", folder / "model.sim.onnx", folder / "saved_model")
    model_json = tfjs_taps.convert(folder / "saved_model", folder / "tfjs", None)
    nodes = json.loads(model_json.read_text())["modelTopology"]["node"]
    inner = next(n["name"] for n in nodes if n["op"] == "ResizeNearestNeighbor")
    (got,) = run_tfjs_graph(model_json, [{"input": images(1)}], [inner, "Identity:0"])
    assert got[inner].shape == (1, 20, 20, 8) and got["Identity:0"].shape == (1, 400, 4)


def test_make_validate_passes_localize():
    out = subprocess.run(["make", "-n", "validate", "MODEL=m-416", "LOCALIZE=1"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True).stdout
    assert "--localize" in out
    out = subprocess.run(["make", "-n", "validate", "MODEL=m-416"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True).stdout
    assert "commands validate" in out and "--localize" not in out
