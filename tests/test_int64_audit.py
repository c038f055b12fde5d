"""The int64 audit and its fix (validation/int64_audit, patches/int64_clamp).

Fast tests use small hand-built ONNX graphs and a tiny torch export. The slow test converts a crafted model
whose class channels come from ``y[:, :, k:]`` (an INT64_MAX slice end on an axis TF cannot make static, because
the input's height and width are dynamic) through onnx-tf and tensorflowjs, runs it with real TFJS in Node and
shows: the static audit finds the narrowed constant; TFJS loses the last class channel BEFORE the fix; after
``int64_clamp`` TFJS matches PyTorch and the re-audit has no unfixed finding.
"""
from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from contracts.errors import UserError
from validation.int64_audit import audit_onnx, static_audit
from validation.int64_audit.dynamic import channel_max_diff, summarize

INT64_MAX = int(np.iinfo(np.int64).max)
INT64_MIN = int(np.iinfo(np.int64).min)
INT32_MAX = int(np.iinfo(np.int32).max)
INT32_MIN = int(np.iinfo(np.int32).min)
NUM_CLASSES, REG_MAX = 4, 1
NBINS = 4 * (REG_MAX + 1)


def _clamp():
    import patches
    return patches.ONNX_PATCHES["int64_clamp"]  # KeyError (a failure, not a skip) if the fix is unregistered


def _slice_model(starts, ends, steps, dims, axes=(2,)):
    """x[dims] -> Slice(starts, ends, axes, steps) -> Identity; dims may hold strings (dynamic)."""
    inits = [numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in
             (("starts", starts), ("ends", ends), ("axes", list(axes)), ("steps", steps))]
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"], name="the_slice")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model, x):
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _bound(model, name):
    node = next(n for n in model.graph.node if n.op_type == "Slice")
    idx = {"starts": 1, "ends": 2, "steps": 4}[name]
    init = next(i for i in model.graph.initializer if i.name == node.input[idx])
    return numpy_helper.to_array(init).tolist()


def test_clamp_static_axis_uses_its_length():
    model = _slice_model([1], [INT64_MAX], [1], [1, 2, 5])
    fixed, report = _clamp().rewrite(model, None)
    assert _bound(fixed, "ends") == [5]
    assert report["count"] == 1 and report["clamped"][0]["how"] == "static axis length"
    x = np.random.default_rng(0).standard_normal((1, 2, 5)).astype(np.float32)
    np.testing.assert_array_equal(_run(fixed, x), _run(model, x))
    assert audit_onnx(model, "before", emulate=False)["findings"]
    assert not audit_onnx(fixed, "after", emulate=False)["findings"]


def test_clamp_dynamic_axis_and_reverse_slice_stay_exact():
    # end INT64_MAX on a dynamic axis -> INT32_MAX; a reverse slice (end INT64_MIN, step -1) -> INT32_MIN
    fwd = _slice_model([1], [INT64_MAX], [1], [1, 2, "n"])
    rev = _slice_model([-1], [INT64_MIN], [-1], [1, 2, "n"])
    for model, want in ((fwd, [INT32_MAX]), (rev, [INT32_MIN])):
        fixed, report = _clamp().rewrite(model, None)
        assert _bound(fixed, "ends") == want, report
        for n in (1, 3, 7):
            x = np.random.default_rng(n).standard_normal((1, 2, n)).astype(np.float32)
            np.testing.assert_array_equal(_run(fixed, x), _run(model, x))
        assert not audit_onnx(fixed, "after", emulate=False)["findings"]


def test_clamp_int64_min_start_becomes_zero():
    model = _slice_model([INT64_MIN], [3], [1], [1, 2, "n"])
    fixed, _ = _clamp().rewrite(model, None)
    assert _bound(fixed, "starts") == [0]


def test_clamp_refuses_where_no_exact_rewrite_exists():
    shape = numpy_helper.from_array(np.asarray([1, INT64_MAX], np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad_reshape")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UserError, match="bad_reshape"):
        _clamp().rewrite(model, None)
    finding = audit_onnx(model, "m", emulate=False)["findings"][0]
    assert finding["narrowed"] == [-1] and finding["consumers"][0]["role"] == "shape"


def test_clamp_leaves_a_clean_graph_alone():
    model = _slice_model([1], [4], [1], [1, 2, 5])
    fixed, report = _clamp().rewrite(model, None)
    assert report["count"] == 0 and _bound(fixed, "ends") == [4]


class Crafted(torch.nn.Module):
    """A detector-shaped toy: box bins first, class logits after them, taken with ``y[:, :, k:]`` (INT64_MAX)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, NBINS + NUM_CLASSES, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=gen))

    def forward(self, x):
        y = self.conv(x).flatten(2).permute(0, 2, 1)
        return y[:, :, NBINS:].sigmoid(), y[:, :, :NBINS]


OUTPUTS = ["cls_pred_stride_8", "dis_pred_stride_8"]


def _export(path):
    model = Crafted().eval()
    torch.onnx.export(model, torch.zeros(1, 3, 8, 8), str(path), opset_version=10, dynamo=False,
                      input_names=["input"], output_names=OUTPUTS, dynamic_axes={"input": {2: "h", 3: "w"}})
    return model


def test_audit_traces_crafted_overflow_to_the_last_class(tmp_path):
    _export(tmp_path / "model.onnx")
    res = audit_onnx(tmp_path / "model.onnx", reg_max=REG_MAX)
    (f,) = res["findings"]
    assert f["original"] == ["INT64_MAX"] and f["narrowed"] == [-1]
    assert [(c["op"], c["role"]) for c in f["consumers"]] == [("Slice", "ends")]
    emu = f["emulation"]["outputs"]
    assert list(emu) == ["cls_pred_stride_8"] and emu["cls_pred_stride_8"]["classes"] == [NUM_CLASSES - 1]
    fixed, _ = _clamp().rewrite(onnx.load(str(tmp_path / "model.onnx")), None)
    assert audit_onnx(fixed, "fixed")["findings"] == []


def test_dynamic_summary_flags_missing_and_outlier_classes():
    rng = np.random.default_rng(0)
    ref = {"cls_pred_stride_8": rng.random((1, 10, 5)), "dis_pred_stride_8": rng.random((1, 10, 8))}
    got = {"cls_pred_stride_8": ref["cls_pred_stride_8"][..., :4] + 1e-6,
           "dis_pred_stride_8": ref["dis_pred_stride_8"].copy()}
    got["cls_pred_stride_8"][..., 1] += 0.5
    finding = {"id": "x-1", "affected_outputs": {"cls_pred_stride_8": {"classes": [4]}}}
    s = summarize(channel_max_diff(ref, got), REG_MAX, 1e-4, [finding])
    flagged = {c["class"]: c for c in s["flagged_classes"]}
    assert set(flagged) == {1, 4}
    assert flagged[4]["max_diff"] == "inf" and flagged[4]["explained_by"] == ["x-1"]
    assert flagged[1]["explained_by"] == "unexplained" and flagged[1]["outlier"]
    assert s["per_side_max_diff"] == {s_: 0.0 for s_ in ("left", "top", "right", "bottom")}


def _convert(onnx_path, out_dir):
    """ONNX -> SavedModel (the pipeline's onnx-tf backend) -> TFJS (tensorflowjs, in-process)."""
    import json

    from converters.backend_onnx_tf import to_saved_model
    from contracts.tf_environment import import_tensorflowjs

    to_saved_model(onnx_path, out_dir / "saved_model", types.SimpleNamespace(strides=[8]))
    import_tensorflowjs()
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model
    convert_tf_saved_model(str(out_dir / "saved_model"), str(out_dir / "tfjs"), signature_def="serving_default",
                           saved_model_tags="serve")
    sig = json.loads((out_dir / "tfjs" / "model.json").read_text())["signature"]
    outs = sig["outputs"]
    if set(OUTPUTS) <= set(outs):
        mapping = {n: outs[n]["name"] for n in OUTPUTS}
    else:  # with dynamic dims the keys become Identity_k:0, k in the sorted order of the SavedModel's keys
        mapping = {n: ("Identity:0" if k == 0 else f"Identity_{k}:0") for k, n in enumerate(sorted(OUTPUTS))}
    return {"input": {"name": next(iter(sig["inputs"].values()))["name"], "layout": "NCHW"}, "outputs": mapping}


@pytest.mark.slow
def test_crafted_overflow_breaks_tfjs_and_int64_clamp_fixes_it(tmp_path):
    from validation.int64_audit.dynamic import run_dynamic
    from contracts.io_spec import IoSpec

    torch_model = _export(tmp_path / "model.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 10)).astype(np.float32)

    def reference(batch):
        with torch.no_grad():
            return {n: t.numpy() for n, t in zip(OUTPUTS, torch_model(torch.as_tensor(batch)))}

    results = {}
    for variant in ("unpatched", "int64_clamp"):
        d = tmp_path / variant
        d.mkdir()
        stages = {"onnx": tmp_path / "model.onnx"}
        src = tmp_path / "model.onnx"
        if variant == "int64_clamp":
            fixed, report = _clamp().rewrite(onnx.load(str(src)), None)
            assert report["count"] == 1
            src = stages["onnx_sim"] = d / "model.sim.onnx"
            onnx.save(fixed, str(src))
        spec = _convert(src, d)
        stages.update(saved_model=d / "saved_model", tfjs=d / "tfjs" / "model.json")
        io = IoSpec.from_dict(spec)
        result = static_audit(stages, REG_MAX, {m.name: s for s, m in io.outputs.items()})
        result["dynamic"] = run_dynamic(stages["tfjs"], io, reference, x, REG_MAX, 1e-4, result["findings"])
        results[variant] = result

    before, after = results["unpatched"], results["int64_clamp"]
    by_stage = {f["stage"]: f for f in before["findings"]}
    assert set(by_stage) == {"onnx", "saved_model", "tfjs"}
    assert by_stage["tfjs"]["status"] == "confirmed" and by_stage["tfjs"]["narrowed"] == [-1]
    assert by_stage["saved_model"]["reaches_tfjs"] is True
    assert not any(f["fixed"] for f in before["findings"])
    dyn = before["dynamic"]
    assert dyn["output_shapes"]["cls_pred_stride_8"]["tfjs"][-1] == NUM_CLASSES - 1  # TFJS lost a channel
    flagged = {c["class"]: c for c in dyn["flagged_classes"]}
    assert set(flagged) == {NUM_CLASSES - 1}
    assert by_stage["tfjs"]["id"] in flagged[NUM_CLASSES - 1]["explained_by"]

    assert [f for f in after["findings"] if not f["fixed"]] == []
    assert after["dynamic"]["flagged_classes"] == []
    assert max(after["dynamic"]["per_class_max_diff"].values()) < 1e-5
    assert after["dynamic"]["output_shapes"]["cls_pred_stride_8"]["tfjs"][-1] == NUM_CLASSES


def test_cli_bad_file_is_one_line_error(capsys):
    from commands.audit import main
    assert main(["--onnx", "no/such/model.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --onnx no/such/model.onnx")


def test_peer_tfjs_has_no_int64_finding(shared):
    """The peer artifact: no slice at all, every int64 constant is a Reshape shape (see docs/int64-audit.md, "The peer artifact")."""
    from validation.int64_audit import audit_tfjs
    res = audit_tfjs(shared / "reference" / "vladmandic-nanodet-m" / "nanodet-m.json")
    inv = res["inventory"]
    assert res["findings"] == [] and inv["slice_ops"] == 0
    assert inv["int64_origin_tensors"] == inv["stored_as_int32"] > 0
    assert set(inv["int64_uses"]) == {"Reshape.shape", "SparseToDense.indices", "SparseToDense.output_shape"}
