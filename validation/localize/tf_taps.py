"""The SavedModel stage's intermediate tensors: the instrumented ONNX graph converted by the stage's own backend.

``convert(backend, taps_onnx, out_dir)`` hands the instrumented graph (``onnx_taps.instrument``: every tapped
tensor is also a graph output ``tap_NNNNN``) to the same backend with the same calls the stage makes, minus the
backend's final checks of its outputs against the model signature and onnxruntime (a wrong conversion is what we
are looking for, so it must not stop here):

- ``onnx_tf``: ``onnx_tf.backend.prepare(model, device="CPU").export_graph`` (``converters.backend_onnx_tf``);
- ``tf_nhwc``: ``converters.tf_nhwc.backend.build_module`` saved with ``tf.saved_model.save``;
- ``onnx2tf``: ``converters.backend_onnx2tf._run_onnx2tf`` in a child process (``onnx2tf_worker``), as the
  backend runs it.

Layouts, per backend (each tap comes back laid out as the backend keeps that tensor; compared in the ONNX
layout, NCHW): onnx-tf keeps the ONNX layout for every tensor; tf_nhwc turns every graph output back into the
ONNX layout (its translator's ``graph_output``); onnx2tf keeps a tensor either as ONNX has it or channels-last
(NHWC / NWC / NDHWC), so each tap is moved back by the one of those two that gives the ONNX shape, and is left
out ("not reached") where both or neither do (e.g. C == H == W).

Output names: onnx-tf and tf_nhwc keep the ONNX output names as serving keys; onnx2tf names them ``output_<k>``
in the order of the graph's outputs, checked here against the taps' shapes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contracts.paths import PROJECT_ROOT

SIGNATURE = "serving_default"
KEEPS_ONNX_LAYOUT = ("onnx_tf", "tf_nhwc")
# grappler's complaint about onnx2tf's instrumented graph (it then runs the graph unoptimised: same values)
REMAPPER_NOISE = r"meta_optimizer\.cc:\d+\] remapper failed: "


def noise():
    """TF's no-GPU lines and grappler's remapper complaint: what localisation filters out of stderr."""
    import re

    from contracts.tf_environment import RUNTIME_NOISE
    return re.compile(f"{RUNTIME_NOISE.pattern}|{REMAPPER_NOISE}")


@dataclass
class TfTaps:
    """An instrumented SavedModel and how to read each tap back in the ONNX layout."""
    saved_model: Path
    input_key: str
    input_layout: str                                  # NCHW or NHWC
    keys: dict = field(default_factory=dict)           # serving key -> tap name
    perms: dict = field(default_factory=dict)          # tap name -> transpose to the ONNX layout (None: as is)
    missing: dict = field(default_factory=dict)        # tap name -> why it cannot be read back
    shapes: dict = field(default_factory=dict)         # tap name -> its shape in the engine's layout


def convert(backend: str, taps_onnx: Path, out_dir: Path, log=print, timeout: float = 1800) -> Path:
    """The instrumented SavedModel of ``taps_onnx`` at ``out_dir`` through ``backend`` (module docstring)."""
    from contracts.stderr_filter import filtered_stderr

    taps_onnx, out_dir = Path(taps_onnx), Path(out_dir)
    if backend == "onnx2tf":
        _onnx2tf_in_child(taps_onnx, out_dir, timeout)
        return out_dir
    with filtered_stderr(noise(), label=f"localisation: backend {backend}"):
        if backend == "onnx_tf":
            from contracts import tf_environment
            tf_environment.install()
            tf_environment.import_tensorflow()
            import onnx
            from onnx_tf.backend import prepare
            prepare(onnx.load(str(taps_onnx)), device="CPU").export_graph(str(out_dir))
        elif backend == "tf_nhwc":
            from contracts.tf_environment import import_tensorflow
            from converters.tf_nhwc.backend import SIGNATURE as NHWC_SIGNATURE, build_module
            tf = import_tensorflow()
            module, _, _ = build_module(taps_onnx)
            tf.saved_model.save(module, str(out_dir), signatures={NHWC_SIGNATURE: module.serve.get_concrete_function()})
        else:
            raise ValueError(f"localisation knows no backend '{backend}'")
    return out_dir


def _onnx2tf_in_child(taps_onnx: Path, out_dir: Path, timeout: float) -> None:
    """onnx2tf on ``taps_onnx`` in a child process in a scratch folder, as ``converters.backend_onnx2tf`` runs it
    (the venv's bin on PATH: onnx2tf shells out to onnxsim)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="onnx2tf-taps-", dir=out_dir.parent) as tmp:
        cmd = [sys.executable, "-m", "validation.localize.onnx2tf_worker", str(taps_onnx.resolve()),
               str(out_dir.resolve())]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"onnx2tf on the instrumented graph timed out after {timeout:.0f} s") from None
    if proc.returncode != 0 or not (out_dir / "saved_model.pb").is_file():
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise RuntimeError(f"onnx2tf on the instrumented graph failed (exit {proc.returncode}): {tail[-600:]}")


def read_taps(backend: str, saved_model: Path, tap_shapes: dict[str, tuple], onnx_input_shape) -> TfTaps:
    """How to read every tap of the instrumented SavedModel back in the ONNX layout (module docstring).
    ``tap_shapes``: each tap's ONNX shape (onnxruntime's values); ``onnx_input_shape``: [N, C, H, W]."""
    from converters.backend_onnx_tf import read_signature

    sig = read_signature(saved_model, SIGNATURE)
    (in_key, (_, in_shape)), = sig["inputs"].items()
    n, c, h, w = onnx_input_shape
    layout = "NCHW" if list(in_shape) == [n, c, h, w] else "NHWC"
    taps = TfTaps(Path(saved_model), in_key, layout)
    shapes = {key: tuple(shape) for key, (_, shape) in sig["outputs"].items()}
    if backend == "onnx2tf":
        taps.keys = _onnx2tf_keys(shapes, tap_shapes)
    else:
        taps.keys = {k: k for k in shapes if k in tap_shapes}
    for key, tap in taps.keys.items():
        want, have = tuple(tap_shapes[tap]), shapes[key]
        taps.shapes[tap] = have
        if backend in KEEPS_ONNX_LAYOUT:
            if have == want:
                taps.perms[tap] = None
            else:
                taps.missing[tap] = f"shape {list(have)} != ONNX {list(want)}"
        else:
            perm, why = layout_back(have, want)
            if why:
                taps.missing[tap] = why
            else:
                taps.perms[tap] = perm
    for tap in tap_shapes:
        if tap not in taps.keys.values():
            taps.missing.setdefault(tap, "not an output of the instrumented SavedModel")
    return taps


def _onnx2tf_keys(shapes: dict, tap_shapes: dict) -> dict:
    """onnx2tf's ``output_<k>`` -> the k-th tap (the taps are the instrumented graph's outputs, in name order);
    refused unless every tap finds its output and every output's shape is its tap's, as is or channels-last."""
    taps = sorted(tap_shapes)
    keys = {}
    for key in shapes:
        k = key[len("output_"):]
        if key.startswith("output_") and k.isdigit() and int(k) < len(taps):
            keys[key] = taps[int(k)]
    bad = [k for k, t in keys.items() if not _fits(shapes[k], tuple(tap_shapes[t]))]
    if bad or len(keys) != len(taps):
        raise RuntimeError(f"onnx2tf's outputs do not line up with the taps ({len(keys)} of {len(taps)} found; "
                           f"shapes differ at {bad[:3]})")
    return keys


def _fits(have: tuple, want: tuple) -> bool:
    have, want = tuple(have), tuple(want)
    return have == want or (len(have) >= 3 and tuple(have[p] for p in channels_last(len(have))) == want)


def channels_last(rank: int) -> list[int]:
    """The transpose that moves a channels-last tensor of this rank back to channels-first."""
    return [0, rank - 1] + list(range(1, rank - 1))


def layout_back(have: tuple, want: tuple) -> tuple[list[int] | None, str | None]:
    """(transpose or None, None) that brings a tensor of shape ``have`` to the ONNX shape ``want``: as is, or
    from channels-last; (None, why) where neither or both fit (ambiguous)."""
    have, want = tuple(have), tuple(want)
    fits = []
    if have == want:
        fits.append(None)
    if len(have) >= 3:
        perm = channels_last(len(have))
        if tuple(have[p] for p in perm) == want and perm != list(range(len(have))):
            fits.append(perm)
    if len(fits) == 1:
        return fits[0], None
    if not fits:
        return None, f"shape {list(have)} is neither the ONNX shape {list(want)} nor channels-last of it"
    return None, f"layout ambiguous: shape {list(have)} fits the ONNX shape {list(want)} as is and channels-last"


def run(taps: TfTaps, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """One dict per image ([1,3,H,W] NCHW each): tap name -> value in the ONNX layout."""
    from contracts.stderr_filter import filtered_stderr
    from contracts.tf_environment import import_tensorflow

    tf = import_tensorflow()
    out = []
    with filtered_stderr(noise(), label="localisation: SavedModel"):
        fn = tf.saved_model.load(str(taps.saved_model)).signatures[SIGNATURE]
        for i in range(len(images)):
            x = np.ascontiguousarray(images[i:i + 1], np.float32)
            if taps.input_layout == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            got = fn(**{taps.input_key: tf.constant(x)})
            out.append(back_to_onnx_layout({k: v.numpy() for k, v in got.items()}, taps))
    return out


def back_to_onnx_layout(produced: dict, taps: TfTaps) -> dict[str, np.ndarray]:
    """Engine outputs by serving key -> tap name -> float32 value in the ONNX layout."""
    out = {}
    for key, tap in taps.keys.items():
        if tap in taps.missing or key not in produced:
            continue
        v = np.asarray(produced[key])
        if not np.issubdtype(v.dtype, np.floating):
            continue
        perm = taps.perms.get(tap)
        out[tap] = np.ascontiguousarray(v.transpose(perm) if perm else v, np.float32)
    return out


def engine_nodes(saved_model: Path, keys: dict, onnx_ops: dict) -> dict[str, str]:
    """tap name -> "op name (op type)" of the TF op that computes it in the frozen serving function, reached
    through Identity ops and the Transposes that only restore the ONNX layout (``onnx_ops``: tap name -> op type
    of the tapped ONNX node; where that is a Transpose, the Transpose is the op)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from contracts.stderr_filter import filtered_stderr
    from contracts.tf_environment import import_tensorflow
    tf = import_tensorflow()
    with filtered_stderr(noise(), label="localisation: freezing the SavedModel"):   # grappler's lines
        loaded = tf.saved_model.load(str(saved_model))
        fn = loaded.signatures[SIGNATURE]
        frozen = convert_variables_to_constants_v2(fn)
    names = sorted(fn.structured_outputs)          # nest.flatten orders a dict by its keys
    out = {}
    for key, tensor in zip(names, frozen.outputs):
        if key not in keys:
            continue
        passes = ("Identity", "IdentityN") + (() if onnx_ops.get(keys[key]) == "Transpose" else ("Transpose",))
        op = tensor.op
        while op.type in passes and op.inputs:
            op = op.inputs[0].op
        out[keys[key]] = f"{op.name} ({op.type})"
    return out


def op_histogram(saved_model: Path) -> dict[str, int]:
    """How many ops of each type the SavedModel's graph and its functions hold: compared between the artifact
    and its instrumented copy. Left out: Identity, Const, NoOp, the call and variable plumbing, and Transpose
    (a tap in the ONNX layout keeps layout transposes that converters otherwise cancel in pairs)."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    skip = {"Identity", "IdentityN", "Const", "NoOp", "Placeholder", "PartitionedCall", "StatefulPartitionedCall",
            "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "RestoreV2", "SaveV2", "MergeV2Checkpoints",
            "ShardedFilename", "StringJoin", "StaticRegexFullMatch", "Select", "Pack", "Transpose"}
    counts: dict = {}
    for meta in sm.meta_graphs:
        nodes = list(meta.graph_def.node) + [n for f in meta.graph_def.library.function for n in f.node_def]
        for node in nodes:
            if node.op not in skip:
                counts[node.op] = counts.get(node.op, 0) + 1
    return counts
