"""The TFJS stage's intermediate tensors: the instrumented SavedModel converted as the tfjs stage converts, run by
TFJS itself in Node.

``convert`` calls tensorflowjs' ``convert_tf_saved_model`` with the stage's own arguments (serving signature,
the artifact's weight quantisation, debug ops stripped: ``converters.stage_tfjs``). Which TFJS tensor is which
tap: the converter names the serving function's outputs ``Identity``, ``Identity_1``, ... in the order of the
serving keys sorted by name (TF flattens a dict of outputs by sorted key), while the keys it writes into
``model.json``'s signature are unreliable with many outputs (most become ``Identity_<k>:0``); so the k-th
sorted key is read from ``Identity_<k>`` and its shape is checked against the signature's entry for that
tensor. ``run`` fetches them all with ``GraphModel.execute(feeds, names)`` (``js/run_graph_model.mjs
--outputs-file``; that call also takes internal node names). Each tap comes back in the layout the SavedModel
had it (``tf_taps.TfTaps.perms``) and is moved to the ONNX layout the same way.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from .tf_taps import TfTaps, back_to_onnx_layout

PASS_THROUGH = ("Identity", "IdentityN")
NOT_ACTIVATIONS = ("BiasAdd", "FusedBatchNorm", "Add", "AddV2")       # what else a fused node's fused_ops holds
ACTIVATIONS = ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Clip", "HardSigmoid",
               "HardSwish", "Softplus")                                 # ONNX ops a fused node may end with


def convert(saved_model: Path, out_dir: Path, quantize: str | None) -> Path:
    """TFJS graph model of the instrumented SavedModel at ``out_dir`` (stage_tfjs's converter arguments)."""
    from contracts.stderr_filter import filtered_stderr
    from contracts.tf_environment import import_tensorflowjs
    from converters.stage_tfjs import quantization_map

    from .tf_taps import noise

    import_tensorflowjs()
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

    with contextlib.redirect_stdout(io.StringIO()), \
            filtered_stderr(noise(), label="localisation: tfjs converter"):
        convert_tf_saved_model(str(saved_model), str(out_dir), signature_def="serving_default",
                               saved_model_tags="serve", quantization_dtype_map=quantization_map(quantize),
                               strip_debug_ops=True)
    return Path(out_dir) / "model.json"


def output_names(model_json: Path, keys: dict) -> dict[str, str]:
    """TFJS tensor name -> tap name, for the serving keys ``keys`` (key -> tap) of the SavedModel it was made
    from (module docstring; ``check_shapes`` then checks the pairing against model.json's signature)."""
    model = json.loads(Path(model_json).read_text())
    nodes = {n["name"] for n in model["modelTopology"]["node"]}
    out = {}
    for k, key in enumerate(sorted(keys)):
        name = "Identity" if k == 0 else f"Identity_{k}"
        if name in nodes:
            out[f"{name}:0"] = keys[key]
    return out


def check_shapes(model_json: Path, names: dict, tap_shapes_in_engine: dict) -> list[str]:
    """Taps whose TFJS tensor has another shape in model.json's signature than in the SavedModel."""
    sig = (json.loads(Path(model_json).read_text()).get("signature") or {}).get("outputs") or {}
    by_name = {v.get("name"): v for v in sig.values()}
    bad = []
    for name, tap in names.items():
        info = by_name.get(name)
        dims = [int(d.get("size", -1)) for d in ((info or {}).get("tensorShape") or {}).get("dim", [])]
        if info is not None and tap in tap_shapes_in_engine and dims and dims != list(tap_shapes_in_engine[tap]):
            bad.append(tap)
    return bad


def run(model_json: Path, names: dict, taps: TfTaps, images: np.ndarray, backend: str = "wasm"
        ) -> list[dict[str, np.ndarray]]:
    """One dict per image: tap name -> value in the ONNX layout, as TFJS computes it in Node."""
    from ..runners.tfjs_node import run_tfjs_graph

    feeds = []
    for i in range(len(images)):
        x = np.ascontiguousarray(images[i:i + 1], np.float32)
        if taps.input_layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        feeds.append({_input_name(model_json): x})
    wanted = list(names)
    results = run_tfjs_graph(model_json, feeds, wanted, backend)
    key_of = {tap: key for key, tap in taps.keys.items()}
    return [back_to_onnx_layout({key_of[names[n]]: r[n] for n in wanted if n in r}, taps) for r in results]


def _input_name(model_json: Path) -> str:
    sig = json.loads(Path(model_json).read_text()).get("signature") or {}
    (key, info), = (sig.get("inputs") or {}).items()
    return info.get("name", key)


def engine_nodes(model_json: Path, names: dict, onnx_ops: dict) -> dict[str, dict]:
    """tap name -> {"name", "op", "fused_ops"} of the TFJS node that computes it: reached from the tap's output
    through Identity nodes and the Transposes that only restore the ONNX layout (a Transpose is the node itself
    where the tapped ONNX op is one). ``onnx_ops``: tap name -> op type of the ONNX node it taps."""
    nodes = {n["name"]: n for n in json.loads(Path(model_json).read_text())["modelTopology"]["node"]}
    out = {}
    for name, tap in names.items():
        passes = PASS_THROUGH + (() if onnx_ops.get(tap) == "Transpose" else ("Transpose",))
        node = nodes.get(name.split(":")[0])
        while node is not None and node["op"] in passes and node.get("input"):
            node = nodes.get(node["input"][0].split(":")[0].lstrip("^"))
        if node is not None:
            out[tap] = {"name": node["name"], "op": node["op"], "fused_ops": _fused_ops(node)}
    return out


def _fused_ops(node: dict) -> list[str]:
    import base64
    raw = ((node.get("attr") or {}).get("fused_ops") or {}).get("list", {}).get("s", [])
    return [base64.b64decode(v).decode() for v in raw]


def fused_past(engine: dict, onnx_ops: dict) -> dict[str, str]:
    """tap name -> why its value is not the tensor's: the tapped tensor is the input of an activation (a Conv's
    output, say) but the TFJS node it is read from had that activation fused in by the converter, which rewires
    every reader of the conv, the tap included, to the activated output (tensorflowjs'
    ``fuse_prelu_with_fused_conv2d_or_matmul`` does not check for other readers). Only the instrumented copy
    has such a second reader; the artifact's own conv feeds the activation alone."""
    out = {}
    for tap, node in engine.items():
        acts = [op for op in node["fused_ops"] if op not in NOT_ACTIVATIONS]
        if acts and onnx_ops.get(tap) not in ACTIVATIONS:
            out[tap] = (f"read from {node['name']} ({node['op']}), into which the tfjs converter fused "
                        f"{'+'.join(acts)}: it holds the activated value, not this tensor")
    return out


def op_histogram(model_json: Path) -> dict[str, int]:
    """How many nodes of each op a TFJS graph model holds (Identity, Const, Placeholder and Transpose left out, as
    in ``tf_taps.op_histogram``)."""
    counts: dict = {}
    for n in json.loads(Path(model_json).read_text())["modelTopology"]["node"]:
        if n["op"] not in PASS_THROUGH + ("Const", "Placeholder", "Transpose"):
            counts[n["op"]] = counts.get(n["op"], 0) + 1
    return counts
