"""Mixed weight types: the options, the uint8 / float16 simulation against tensorflowjs' own code, the exact-name
map tensorflowjs receives, the walk's stopping rule, and (slow) ``--quantize uint8 --keep`` reaching the converter.

The auto search on the real m-416 is tested in test_quantize_auto.py.
"""
from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from converters.options import DEFAULT_AP_BUDGET, ConvertOptions, artifact_name
from converters.weight_types import WeightEntry, dtype_map, float_entries, resolve_keep
from validation.quantize_search.affine import as_stored, exact_in
from validation.quantize_search.walk import (ERROR_PER_IMAGE, Step, first_quiet, prefix_sizes, promotion_order,
                                            walk)


# --- options and names --------------------------------------------------------------------------------------------

def test_mixed_variants_have_their_own_folders_and_plain_ones_keep_theirs():
    assert artifact_name("m-416", ConvertOptions(quantize="uint8")) == "m-416-uint8"
    assert artifact_name("m-416", ConvertOptions(quantize="auto")) == "m-416-auto"
    assert artifact_name("m-416", ConvertOptions(quantize="auto", ap_budget=0.005)) == "m-416-auto0.005"
    a = artifact_name("m-416", ConvertOptions(quantize="uint8", keep="unknown_*,PartitionedCall/Reshape"))
    b = artifact_name("m-416", ConvertOptions(quantize="uint8", keep=("PartitionedCall/Reshape", "unknown_*")))
    c = artifact_name("m-416", ConvertOptions(quantize="uint8", keep="unknown_1*"))
    assert a == b and a.startswith("m-416-uint8-keep-") and a != c
    # the plain options' manifest record is what it was before the mixed modes existed
    assert set(ConvertOptions(quantize="uint8").as_dict()) == {"opset", "quantize", "backend", "patches", "layout"}
    assert ConvertOptions(quantize="auto").ap_budget == DEFAULT_AP_BUDGET


@pytest.mark.parametrize("kwargs, message", [
    ({"keep": "unknown_*"}, "--keep: applies to --quantize uint8 or float16"),
    ({"quantize": "auto", "keep": "unknown_*"}, "--keep: applies to --quantize uint8 or float16"),
    ({"quantize": "uint8", "ap_budget": 0.01}, "--ap-budget: applies to --quantize auto only"),
    ({"quantize": "auto", "ap_budget": 0}, "not an AP difference"),
    ({"quantize": "auto", "ap_budget": "x"}, "is not a number"),
])
def test_misplaced_mixed_options_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        ConvertOptions(**kwargs)


# --- what TFJS computes with --------------------------------------------------------------------------------------

def _tfjs_roundtrip(values, dtype):
    from contracts.tf_environment import import_tensorflowjs
    import_tensorflowjs()
    from tensorflowjs.quantization import dequantize_weights, quantize_weights
    q, meta = quantize_weights(values, {"uint8": np.uint8, "float16": np.float16}[dtype])
    return dequantize_weights(q, meta, np.float32)


def test_simulated_storage_is_what_tensorflowjs_stores():
    rng = np.random.default_rng(0)
    # kernels as large as m-416's 1x1 ones: the codes of a few of their values depend on the arithmetic's precision
    cases = [rng.normal(0, s, (1, 1, 232, 232)).astype(np.float32) + o for s in (1e-3, 0.3, 12) for o in (-4, 0, 6)]
    cases += [np.full((7,), 2.5, np.float32), np.array([-3.4028235e38], np.float32),
              rng.uniform(1.0, 1.8, (26, 26)).astype(np.float32)]          # all above 0: no nudge
    for values in cases:
        for dtype in ("uint8", "float16"):
            assert np.array_equal(as_stored(values, dtype), _tfjs_roundtrip(values, dtype)), (dtype, values.shape)
    assert exact_in(np.full((7,), 2.5, np.float32), "uint8") and not exact_in(cases[0], "uint8")


# --- the exact-name map tensorflowjs receives ---------------------------------------------------------------------

def _entry(name):
    return WeightEntry(name, (3,), "float32", "float32", None)


def test_an_assignment_reaches_tensorflowjs_name_by_name():
    """Names with fnmatch's special characters are matched literally by tensorflowjs' own mapping."""
    from contracts.tf_environment import import_tensorflowjs
    import_tensorflowjs()
    from tensorflowjs.quantization import map_layers_to_quantization_dtype

    names = ["conv/w", "conv/w_1", "odd[1]/w", "star*", "bias"]
    assignment = {"conv/w": "uint8", "conv/w_1": "float16", "odd[1]/w": "uint8", "star*": "float32",
                  "bias": "float16"}
    mapped = map_layers_to_quantization_dtype(names, dtype_map(assignment))
    assert {n: np.dtype(t).name for n, t in mapped.items()} == \
        {"conv/w": "uint8", "conv/w_1": "float16", "odd[1]/w": "uint8", "bias": "float16"}   # star* stays float32
    assert dtype_map({n: "float32" for n in names}) is None


def test_keep_patterns_resolve_over_the_weight_names():
    entries = [_entry(n) for n in ("PartitionedCall/Reshape", "PartitionedCall/Reshape_1", "unknown_0", "unknown_12")]
    got = resolve_keep(entries, ("PartitionedCall/Reshape", "unknown_1*"), "uint8")
    assert got == {"PartitionedCall/Reshape": "float32", "PartitionedCall/Reshape_1": "uint8",
                   "unknown_0": "uint8", "unknown_12": "float32"}
    with pytest.raises(UserError, match=r"--keep 'conv\*': names none of the 4 float32 weights"):
        resolve_keep(entries, ("conv*",), "uint8")


# --- TFJS weights and their ONNX twins ----------------------------------------------------------------------------

def test_a_weight_finds_its_onnx_twin_in_any_layout_and_sign_of_zero():
    """The same numbers in another layout are one unit; a converter's -0.0 for 0.0 does not hide the twin (it hid
    most of NanoDet-Plus's kernels, whose weights hold exact zeros); other numbers are no twin."""
    from onnx import TensorProto, helper, numpy_helper

    from validation.quantize_search.weight_units import build_units

    kernel = np.array([[0.0, 1.5], [-2.0, 0.25], [3.0, -0.0]], np.float32)            # ONNX: [out, in]
    tfjs = {"PartitionedCall/split": np.ascontiguousarray((kernel + 0.0).T),          # TFJS: [in, out], +0.0
            "unknown_0": np.array([0.5, 0.75, 1.0], np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="/head/fc/Gemm", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(kernel, "w"), numpy_helper.from_array(np.array([9.0, 8, 7], np.float32), "b")])
    units = {u.tfjs_names[0]: u for u in build_units(tfjs, helper.make_model(graph))}
    assert units["PartitionedCall/split"].onnx_names == ["w"]
    assert units["PartitionedCall/split"].layers == ["/head/fc/Gemm"]
    assert units["unknown_0"].onnx_names == [] and units["unknown_0"].label == "(no ONNX twin)"



def test_a_split_weight_is_simulated_as_its_own_block_of_rows():
    """tf_nhwc stores the head's shared 1x1 conv as one kernel per branch (classes, box sides): each TFJS piece is
    a block of rows of the ONNX kernel, quantized on its own range. Without block twins the pieces had no twin and
    stayed float32 (m-416: 12 weights, 32592 numbers); the simulation must store each block alone, the other rows
    as their own unit says."""
    from onnx import TensorProto, helper, numpy_helper

    from validation.quantize_search.estimate import Estimator, fixed_types
    from validation.quantize_search.weight_units import build_units

    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(5, 4)).astype(np.float32)
    kernel[3:] *= 40                                                      # box rows: a much wider range
    tfjs = {"PartitionedCall/Const_1": np.ascontiguousarray(kernel[:3].T),
            "PartitionedCall/Const_2": np.ascontiguousarray(kernel[3:].T)}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="/head/gfl_cls.0/Conv", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [numpy_helper.from_array(kernel, "w")])
    units = {u.tfjs_names[0]: u for u in build_units(tfjs, helper.make_model(graph))}
    cls, box = units["PartitionedCall/Const_1"], units["PartitionedCall/Const_2"]
    assert (cls.onnx_names, cls.onnx_slices, box.onnx_slices) == ([], [("w", 0, 3)], [("w", 3, 5)])
    assert cls.simulated and cls.layers == ["/head/gfl_cls.0/Conv"] and fixed_types(list(units.values())) == {}

    class Sim:
        initializers = {"w": kernel}

    est = Estimator(Sim(), list(units.values()), cfg=None)
    fed = est.overrides({cls.key: "uint8", box.key: "float32"})["w"]
    np.testing.assert_array_equal(fed[:3], as_stored(kernel[:3], "uint8"))
    np.testing.assert_array_equal(fed[3:], kernel[3:])
    assert not np.array_equal(fed[:3], as_stored(kernel, "uint8")[:3])   # its own range, not the whole kernel's
    both = est.overrides({cls.key: "uint8", box.key: "float16"})["w"]
    np.testing.assert_array_equal(both[3:], as_stored(kernel[3:], "float16"))
    np.testing.assert_array_equal(kernel, Sim.initializers["w"])          # the initializer itself untouched

# --- the walk -----------------------------------------------------------------------------------------------------

def test_promotion_order_is_error_per_byte_and_skips_exact_units():
    errors = {"big": 100.0, "small_dense": 30.0, "exact": 0.0, "tiny": 1.0}
    counts = {"big": 1000, "small_dense": 10, "exact": 5, "tiny": 1}
    assert promotion_order(errors, counts) == ["small_dense", "tiny", "big"]


def test_prefix_sizes_step_by_one_then_grow_and_end_at_every_unit():
    sizes = prefix_sizes(150)
    assert sizes[:17] == list(range(17)) and sizes[-1] == 150
    assert all(b > a for a, b in zip(sizes, sizes[1:])) and len(sizes) < 40
    assert prefix_sizes(3) == [0, 1, 2, 3]


def _walk_case(errors: dict[int, float], within: set[int]):
    """An evaluate() over prefixes with given errors per image and AP verdicts; it records what it was asked."""
    seen = []

    def evaluate(k):
        seen.append(k)
        return Step(k, 0.0, k in within, errors[k], {})
    return evaluate, seen


def test_walk_takes_no_lucky_prefix_whose_error_is_above_the_bound():
    """The choice half's AP scores PyTorch's at prefixes 0 and 2 by luck (measured: plus-m-416's all-uint8 mix
    did, and lost 0.011 on the held-back half); they are not taken while the output error is above the bound.
    The walk bisects the step where the error falls within it and takes the first prefix after that whose AP is
    within the budget too; a prefix TFJS turned down is passed over."""
    big, small = ERROR_PER_IMAGE * 30, ERROR_PER_IMAGE / 2
    sizes = [0, 1, 2, 4, 8, 16, 20]
    errors = {k: big if k < 11 else small for k in range(21)}
    evaluate, seen = _walk_case(errors, within={0, 2, 16, 20})
    assert walk(sizes, evaluate).k == 16                     # 11 is the first quiet prefix; its AP is outside
    assert {10, 11, 12} <= set(seen) <= set(sizes) | {10, 11, 12}   # bisected 8..16
    assert walk(sizes, evaluate, after=16).k == 20
    assert walk(sizes, evaluate, after=20) is None
    assert walk(sizes, _walk_case(errors, within={0, 2, 11, 16})[0]).k == 11
    assert first_quiet(sizes, _walk_case(errors, set())[0]) == 11
    everything_loud = {k: big for k in range(21)}
    assert walk(sizes, _walk_case(everything_loud, set(sizes))[0]) is None
    assert first_quiet([0, 1], _walk_case({0: small, 1: small}, set())[0]) == 0   # all-uint8 already quiet


# --- --keep reaches the converter (slow: a real TFJS conversion) ---------------------------------------------------

@pytest.mark.slow
def test_kept_weights_stay_float32_in_the_written_manifest(converted_m416):
    """``--quantize uint8 --keep``: the weight named exactly and those a wildcard names are float32 in the written
    model.json (no quantization entry), every other float weight uint8; a pattern naming nothing is refused."""
    names = [e.name for e in float_entries(converted_m416 / "tfjs" / "model.json")]
    exact = names[0]
    wildcard = "PartitionedCall/Const_1?"   # tf_nhwc's names (the default backend): 1x1 kernels, biases, alphas
    want_kept = {exact} | set(fnmatch.filter(names, wildcard))
    assert 1 < len(want_kept) < len(names) // 2
    out = converted_m416.parent / "m-416-uint8-keep-test"   # beside m-416: its first three stages are copied
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    r = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--quantize", "uint8",
                        "--keep", f"{exact},{wildcard}", "--out", str(out), "--no-validate", "--no-audit"],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    weights = [w for g in json.loads((out / "tfjs" / "model.json").read_text())["weightsManifest"]
               for w in g["weights"] if w["dtype"] == "float32"]
    kept = {w["name"] for w in weights if "quantization" not in w}
    assert kept == want_kept
    assert all(w["quantization"]["dtype"] == "uint8" for w in weights if w["name"] not in kept)
    record = json.loads((out / "manifest.json").read_text())["stages"]["tfjs"]
    assert set(record["weight_types"]["names"]["float32"]) == want_kept and record["keep"] == [exact, wildcard]

    before = (out / "manifest.json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--quantize", "uint8",
                        "--keep", "no_such_weight*", "--out", str(out), "--no-validate", "--no-audit"],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --keep 'no_such_weight*': names none of the")
    assert (out / "manifest.json").read_bytes() == before    # the finished folder is untouched


@pytest.mark.slow
def test_weights_command_lists_names_with_their_layers(converted_m416):
    """What --keep matches, with the ONNX layer of each weight (found by its numbers)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    pattern = "PartitionedCall/Const_1[129]"   # tf_nhwc's names: two 1x1 kernels and a bias of stage2.0's branch2
    r = subprocess.run([sys.executable, "-m", "commands", "weights", str(converted_m416), "--match", pattern],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()[1:]
    names = [e.name for e in float_entries(converted_m416 / "tfjs" / "model.json")]
    assert [line.split()[0] for line in lines] == fnmatch.filter(names, pattern) and len(lines) == 3
    assert all(line.split()[2] == "float32" and "/branch2/" in line for line in lines)   # each has its layer
    r = subprocess.run([sys.executable, "-m", "commands", "weights", str(converted_m416), "--match",
                        "PartitionedCall/Const_20[2-5]"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                       timeout=300)   # the head's 1x1 output conv, split by tf_nhwc: blocks of rows of its twin
    assert r.returncode == 0 and r.stdout.count("/head/gfl_cls.1/Conv") == 4, r.stdout
    r = subprocess.run([sys.executable, "-m", "commands", "weights", str(converted_m416), "--match", "nope*"],
                       cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "names none of the float weights" in r.stderr
