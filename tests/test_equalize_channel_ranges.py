"""patches/equalize_channel_ranges.py: power-of-two cross-layer equalization before uint8 storage.

It must leave the float32 outputs bit-identical (onnxruntime, real m-416 weights and a seeded graph with Relu,
LeakyRelu, depthwise and grouped convolutions), actually narrow the per-channel range spread, leave alone what it
cannot prove exact, and run only for the plain uint8 and auto conversions (not float32, float16 or --keep)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import patches
from converters import stage_onnx_sim
from converters.context import StageContext
from converters.options import ConvertOptions
from patches import equalize_channel_ranges as eq


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _kernel(rng, shape) -> np.ndarray:
    """A kernel whose output channels span ranges 2**-6 .. 2**6 apart (times a non-power-of-two, so that the
    scales the rewrite picks are not just undoing ours)."""
    spread = np.exp2(rng.uniform(-6, 6, size=(shape[0],) + (1,) * (len(shape) - 1)))
    return (rng.standard_normal(shape) * spread * 0.37).astype(np.float32)


def _conv(name, x, out, w, b, group=1) -> tuple[onnx.NodeProto, list]:
    inits = [numpy_helper.from_array(w, f"{name}.w")] + ([numpy_helper.from_array(b, f"{name}.b")] if b is not None
                                                         else [])
    pads = [w.shape[2] // 2] * 4
    node = helper.make_node("Conv", [x, f"{name}.w"] + ([f"{name}.b"] if b is not None else []), [out], name=name,
                            group=group, pads=pads, kernel_shape=list(w.shape[2:]))
    return node, inits


def _graph(nodes_inits, outputs) -> onnx.ModelProto:
    nodes, inits = [], []
    for item in nodes_inits:
        if isinstance(item, tuple):
            nodes.append(item[0])
            inits.extend(item[1])
        else:
            nodes.append(item)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9, 9])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 4, 9, 9]) for o in outputs]   # all 4 channels
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def seeded_chain(seed: int = 3) -> onnx.ModelProto:
    """Conv 3x3 -> Relu -> depthwise 3x3 -> (nothing) -> Conv 1x1 -> LeakyRelu -> grouped 3x3 (2 groups) -> out."""
    rng = np.random.default_rng(seed)
    return _graph([
        _conv("full", "x", "a", _kernel(rng, (8, 4, 3, 3)), rng.standard_normal(8).astype(np.float32)),
        helper.make_node("Relu", ["a"], ["a_r"]),
        _conv("dw", "a_r", "b", _kernel(rng, (8, 1, 3, 3)), rng.standard_normal(8).astype(np.float32), group=8),
        _conv("pw", "b", "c", _kernel(rng, (6, 8, 1, 1)), None),
        helper.make_node("LeakyRelu", ["c"], ["c_r"], alpha=0.1),
        _conv("grouped", "c_r", "y", _kernel(rng, (4, 3, 3, 3)), rng.standard_normal(4).astype(np.float32),
              group=2),
    ], ["y"])


def _inputs(seed: int = 0, n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((1, 4, 9, 9)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32) for _ in range(n)]


def test_seeded_chain_stays_bit_identical_and_its_channel_ranges_meet():
    model = seeded_chain()
    new, report = eq.rewrite(model)
    assert report["pairs"] == 3   # full -> Relu -> dw, dw -> pw, pw -> LeakyRelu -> grouped
    assert report["channels_rescaled"] > 0
    for x in _inputs():
        for a, b in zip(_run(model, x), _run(new, x)):
            assert np.array_equal(a, b)
    before, after = _weights(model), _weights(new)
    assert not np.array_equal(before["dw.w"], after["dw.w"])   # a no-op rewrite fails here
    # output-channel spreads of the three first kernels (measured: 420, 4410, 290 -> 279, 138, 249)
    spread = {name: [float(eq.output_ranges(w[name]).max() / eq.output_ranges(w[name]).min()) for w in (before, after)]
              for name in ("full.w", "dw.w", "pw.w")}
    assert spread["dw.w"][1] < spread["dw.w"][0] / 8, spread
    assert np.prod([s[1] for s in spread.values()]) < np.prod([s[0] for s in spread.values()]) / 8, spread
    # every scale is a power of two: each weight's mantissa is unchanged
    for name, w in before.items():
        m0, _ = np.frexp(w)
        m1, _ = np.frexp(after[name])
        assert np.array_equal(m0, m1), name


def test_rewritten_weights_are_powers_of_two_apart_per_channel():
    model = seeded_chain(seed=11)
    new, _ = eq.rewrite(model)
    before, after = _weights(model), _weights(new)
    ratio = after["dw.w"].reshape(8, -1) / before["dw.w"].reshape(8, -1)
    assert np.all(ratio == ratio[:, :1])   # one scale per channel
    assert np.array_equal(np.exp2(np.round(np.log2(ratio[:, 0]))), ratio[:, 0])


def _two_convs(between: list, second_input: str, extra_outputs=()) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    return _graph([
        _conv("c1", "x", "t", _kernel(rng, (4, 4, 3, 3)), rng.standard_normal(4).astype(np.float32)),
        *between,
        _conv("c2", second_input, "y", _kernel(rng, (4, 4, 1, 1)), None),
    ], ["y", *extra_outputs])


@pytest.mark.parametrize("between, second_input, outputs, why", [
    ([helper.make_node("Sigmoid", ["t"], ["s"])], "s", (), "then Sigmoid"),
    ([helper.make_node("Add", ["t", "t"], ["s"])], "s", (), "2 readers"),
    ([helper.make_node("Relu", ["t"], ["s"]), helper.make_node("Neg", ["s"], ["n"])], "s", ("n",), "2 readers"),
    ([helper.make_node("Relu", ["t"], ["s"])], "s", ("s",), "graph output"),
])
def test_pairs_it_cannot_prove_exact_are_left_alone(between, second_input, outputs, why):
    model = _two_convs(between, second_input, outputs)
    new, report = eq.rewrite(model)
    assert report["pairs"] == 0
    assert why in report["not_paired"]
    assert new.SerializeToString() == model.SerializeToString()


def test_a_channel_that_would_turn_subnormal_keeps_its_scale():
    rng = np.random.default_rng(2)
    w1 = _kernel(rng, (4, 4, 3, 3))
    w1[0] *= 64 / np.abs(w1[0]).max()          # channel 0: range 64 against ...
    w1[0, 0, 0, 0] = 2e-38                      # ... a normal weight that 64x smaller would make subnormal
    w2 = _kernel(rng, (4, 4, 1, 1))
    w2[:, 0] = 1e-3
    model = _graph([_conv("c1", "x", "t", w1, None), helper.make_node("Relu", ["t"], ["s"]),
                    _conv("c2", "s", "y", w2, None)], ["y"])
    new, report = eq.rewrite(model)
    after = _weights(new)
    assert np.array_equal(after["c1.w"][0], w1[0]) and np.array_equal(after["c2.w"][:, 0], w2[:, 0])
    assert report["channels_rescaled"] > 0      # the other channels still move
    for x in _inputs(n=2):
        assert np.array_equal(_run(model, x)[0], _run(new, x)[0])


@pytest.fixture(scope="module")
def m416_float32_sim(shared, test_output):
    """m-416's simplified ONNX as a float32 conversion writes it (no equalization): the first two stages."""
    from converters import stage_onnx
    from converters.pipeline import run_stages
    from converters.sources import resolve

    out = test_output / "equalize" / "m-416"
    _, man = run_stages(resolve(model="m-416"), ConvertOptions(), out, log=lambda msg: None,
                        stages=(stage_onnx, stage_onnx_sim))
    assert "equalize_channel_ranges" not in man.data["stages"]["onnx_sim"]["patches"]
    return onnx.load(str(out / "model.sim.onnx"))


def test_m416_real_weights_bit_identical_with_narrower_depthwise_ranges(m416_float32_sim):
    from nanodet_ref.config import load_config
    from validation.dataset import load_batch, resolve_images

    model = m416_float32_sim
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]   # BN is folded into the convs
    new, report = eq.rewrite(model)
    assert report["pairs"] >= 40 and report["channels_rescaled"] > 1000
    ratio = report["largest_range_ratio"]["depthwise kernels"]
    assert ratio["after"] < ratio["before"] / 8, ratio   # measured: 146x -> 9x
    images = resolve_images(limit=3)
    batch = load_batch(images, load_config("m-416")).tensor
    for x in [batch[i:i + 1] for i in range(len(batch))] + _inputs_like(batch):
        for a, b in zip(_run(model, x), _run(new, x)):
            assert np.array_equal(a, b)


def _inputs_like(batch: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [(rng.standard_normal(batch[:1].shape) * 100).astype(np.float32)]


@pytest.mark.parametrize("quantize, keep, runs", [
    (None, (), False), ("float16", (), False), ("float16", ("unknown_6",), False),
    ("uint8", (), True), ("uint8", ("unknown_6",), False), ("auto", (), True),
])
def test_only_uint8_and_auto_get_the_rewrite_and_its_cache_key_says_so(quantize, keep, runs):
    ctx = StageContext(source=None, options=ConvertOptions(quantize=quantize, keep=keep), artifact_dir=None)
    assert ("equalize_channel_ranges" in stage_onnx_sim.onnx_patches(ctx)) is runs
    key = stage_onnx_sim.key_options(ctx)
    assert key == ({"patches": "default", "quantize_only_patches": ["equalize_channel_ranges"]} if runs
                   else {"patches": "default"})
    none = StageContext(source=None, options=ConvertOptions(quantize=quantize, keep=keep, patches="none"),
                        artifact_dir=None)
    assert stage_onnx_sim.onnx_patches(none) == {}


def test_registered_last_among_the_onnx_rewrites():
    assert list(patches.ONNX_PATCHES)[-1] == "equalize_channel_ranges"
    assert patches.ONNX_PATCHES["equalize_channel_ranges"] is eq
