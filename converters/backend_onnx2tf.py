"""ONNX -> TF SavedModel with onnx2tf (``--backend onnx2tf``): NHWC input, no Transpose around every conv.

onnx2tf rewrites the graph to TF's native NHWC layout, so convs, bias and LeakyRelu fuse and the per-conv
Transposes that onnx-tf leaves in the graph disappear. The price: the SavedModel takes [1, H, W, 3] input, its
outputs are called ``output_0..`` and onnx2tf may lay a 3-D output out differently. This module hides all of it:

1. onnx2tf runs in a subprocess (``python -m converters.backend_onnx2tf``) in a temporary working directory, on
   a *copy* of the ONNX file (onnx2tf overwrites its input), with the venv's bin on PATH (it shells out to
   ``onnxsim``) and a deterministic calibration file in that directory (otherwise it downloads one; it only
   feeds onnx2tf's own layout checks and int8 quantisation, which we do not use). Its TFLite export, which it
   always makes and we never use, is skipped: the SavedModel is complete before it.
2. The subprocess runs the SavedModel with TF and onnxruntime on the same seeded input and maps each ONNX
   output to the SavedModel output that reproduces it, by shape and value (transposed if need be). A signature
   output no SavedModel output reproduces within ``TOLERANCE`` is an error, not a guess.
3. It writes a final SavedModel whose ``serving_default`` signature has input ``input`` [1, H, W, 3] and the
   toolkit's output names, each [1, HW, C] (a transpose is added where onnx2tf moved an axis), beside
   ``out_dir`` and renames it into place, so a failed run never leaves a finished-looking folder.

4. Depthwise convs stay depthwise. onnx2tf 1.29.24 keeps a few tensors in NCHW where it loses track of the
   layout (after the channel shuffle's last Reshape; the PAN's ``Add`` of a lateral conv and a resampled map)
   and then emits the depthwise conv that reads them as a grouped ``Conv2D`` (filter [3, 3, 1, C]): TF runs
   it, TFJS does not ("depth of input (C) must match input depth for filter 1"). The subprocess wraps
   onnx2tf's Conv converter so those convs get their input as NHWC and become ``DepthwiseConv2dNative``
   (``_nchw_depthwise_inputs_fixed``; on m-416: 2 backbone + 3 head convs, listed in ``onnx2tf_check.json``),
   and refuses a final SavedModel that still holds a grouped ``Conv2D`` (``grouped_convs``).

onnx2tf options: none beyond the defaults, on purpose. ``-dgc`` (``disable_group_convolution``) also gives a
TFJS model that runs, but as ``tf.split`` into C single-channel convs + concat (636 ``Conv2D`` on m-416, about
4x slower in TFJS wasm); ``-dsm`` (``disable_strict_mode``) does not change the layout decisions; ``-nuo`` only
skips onnxsim, which the pipeline has already run; ``-ebu``/``-eatfp16`` concern MatMul/TFLite, absent here.

``to_saved_model`` returns the io spec (docs/architecture.md): NHWC input, outputs by signature name.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT

TOLERANCE = 1e-3  # max |diff| between onnxruntime and the SavedModel on one seeded input (float32: ~1e-5 seen)
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
REPORT_FILE = "onnx2tf_check.json"


def to_saved_model(onnx_path: Path, out_dir: Path, cfg=None, timeout: float = 900) -> dict:
    """Convert ``onnx_path`` to a SavedModel at ``out_dir``; return its io spec (input NHWC)."""
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: ONNX file not found")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="onnx2tf-", dir=out_dir.parent) as tmp:
        tmp = Path(tmp)
        staged = tmp / "saved_model"
        cmd = [sys.executable, "-m", "converters.backend_onnx2tf", str(onnx_path.resolve()), str(staged)]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"onnx2tf on {onnx_path} timed out after {timeout:.0f} s") from None
        result_file = tmp / "result.json"
        if proc.returncode != 0 or not result_file.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"onnx2tf failed on {onnx_path} (exit {proc.returncode}):\n{tail}")
        result = json.loads(result_file.read_text())
        if result.get("error"):
            raise RuntimeError(f"onnx2tf on {onnx_path}: {result['error']}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    return result["io_spec"]


# ---------------------------------------------------------------- the subprocess side


def _write_calibration(cwd: Path) -> None:
    import numpy as np
    rng = np.random.default_rng(0)
    np.save(cwd / CALIBRATION_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))


def _nchw_depthwise_inputs_fixed(conv_module, fixed: list):
    """Wrap onnx2tf's Conv ``make_node`` so that a depthwise conv on a tensor onnx2tf still holds as NCHW
    becomes ``DepthwiseConv2dNative``, not a grouped ``Conv2D``.

    Where onnx2tf loses track of the layout (the output of the channel shuffle's last Reshape, the PAN's
    ``Add`` of a lateral conv and a resampled map) the TF tensor keeps the ONNX shape [N, C, H, W]. onnx2tf's
    Conv then transposes it to NHWC itself, but decides "depthwise or grouped" from the shape it had *before*
    that transpose (last axis W, not C), and emits a grouped ``Conv2D`` with filter [kh, kw, 1, C]: right in
    TF, rejected by TFJS ("depth of input (C) must match input depth for filter 1"). Handing Conv the NHWC
    transpose up front makes both decisions agree. Only convs whose group equals the channel count of an input
    in the ONNX layout (and C != W, so the layout is unambiguous) are touched; their names go to ``fixed``.
    The result is checked against onnxruntime like every other output of the subprocess.
    """
    import tensorflow as tf

    original = conv_module.make_node

    def make_node(*, graph_node, tf_layers_dict, **kwargs):
        inp = graph_node.inputs[0]
        entry = tf_layers_dict.get(inp.name)
        group = graph_node.attrs.get("group", 1)
        onnx_shape = list(inp.shape) if inp.shape is not None else None
        tf_node = entry.get("tf_node") if isinstance(entry, dict) else None
        if (group > 1 and onnx_shape and len(onnx_shape) == 4 and tf_node is not None
                and hasattr(tf_node, "shape") and list(tf_node.shape) == onnx_shape
                and onnx_shape[1] == group and onnx_shape[1] != onnx_shape[3]):
            tf_layers_dict[inp.name] = dict(entry, tf_node=tf.transpose(tf_node, [0, 2, 3, 1]))
            try:
                out = original(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
            finally:
                tf_layers_dict[inp.name] = entry
            fixed.append(graph_node.name)
            return out
        return original(graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)

    return original, make_node


def _run_onnx2tf(onnx_copy: Path, raw_dir: Path) -> list:
    """onnx2tf.convert, stopped after its SavedModel (its TFLite export follows and is not needed).

    Returns the names of the depthwise convs whose NCHW input was handed over as NHWC
    (``_nchw_depthwise_inputs_fixed``)."""
    import tensorflow as tf
    import onnx2tf
    import onnx2tf.ops.Conv as conv_module

    class _SavedModelWritten(Exception):
        pass

    class _NoTflite:
        def __init__(self, *a, **k):
            self.target_spec = type("Spec", (), {})()

        @classmethod
        def from_keras_model(cls, *a, **k):
            return cls()

        from_concrete_functions = from_keras_model

        def convert(self):
            raise _SavedModelWritten()

    real = tf.lite.TFLiteConverter
    tf.lite.TFLiteConverter = _NoTflite
    fixed: list = []
    original_conv, conv_module.make_node = _nchw_depthwise_inputs_fixed(conv_module, fixed)
    try:
        onnx2tf.convert(input_onnx_file_path=str(onnx_copy), output_folder_path=str(raw_dir),
                        output_signaturedefs=True, non_verbose=True)
    except _SavedModelWritten:
        pass
    finally:
        tf.lite.TFLiteConverter = real
        conv_module.make_node = original_conv
    if not (raw_dir / "saved_model.pb").is_file():
        raise RuntimeError("onnx2tf wrote no saved_model.pb")
    return fixed


def _match_outputs(onnx_outs: dict, tf_outs: dict) -> tuple[dict, dict]:
    """Signature name -> (TF output key, transpose or None), and the max |diff| of each."""
    import itertools

    import numpy as np
    mapping, diffs, free = {}, {}, dict(tf_outs)
    for name, want in onnx_outs.items():
        best = None
        for key, got in free.items():
            for perm in itertools.permutations(range(got.ndim)):
                cand = got.transpose(perm)
                if cand.shape != want.shape:
                    continue
                d = float(np.abs(cand.astype(np.float64) - want).max())
                if best is None or d < best[0]:
                    best = (d, key, None if perm == tuple(range(got.ndim)) else list(perm))
        if best is None or best[0] > TOLERANCE:
            shapes = {k: list(v.shape) for k, v in tf_outs.items()}
            raise RuntimeError(f"no onnx2tf output reproduces '{name}' {list(want.shape)} within {TOLERANCE} "
                               f"(best {best[0] if best else 'none'}; outputs {shapes})")
        mapping[name] = (best[1], best[2])
        diffs[name] = best[0]
        del free[best[1]]
    return mapping, diffs


def grouped_convs(concrete_fn) -> list[str]:
    """The ``Conv2D`` ops of ``concrete_fn`` (frozen, functions inlined) whose filter's input depth is not the
    input's channel count, i.e. grouped convolutions: TF runs them, TFJS rejects them ("depth of input (C)
    must match input depth for filter 1"). One line per op: name, input channels, filter input depth."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    graph = convert_variables_to_constants_v2(concrete_fn).graph
    found = []
    for op in graph.get_operations():
        if op.type != "Conv2D":
            continue
        channel_axis = -1 if op.get_attr("data_format") in (b"NHWC", "NHWC") else 1
        cin, fin = op.inputs[0].shape[channel_axis], op.inputs[1].shape[2]
        if cin is not None and fin is not None and cin != fin:
            found.append(f"{op.name} (input {cin} channels, filter depth {fin})")
    return found


def _worker(onnx_path: Path, staged: Path) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    cwd = Path.cwd()
    _write_calibration(cwd)
    onnx_copy = cwd / "input.onnx"
    shutil.copyfile(onnx_path, onnx_copy)
    model = onnx.load(str(onnx_path))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise RuntimeError(f"expected one graph input, found {[i.name for i in inputs]}")
    in_name = inputs[0].name
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or not all(dims):
        raise RuntimeError(f"input '{in_name}' must be a static [1, 3, H, W] tensor, got {dims}")
    out_names = [o.name for o in model.graph.output]

    raw = cwd / "raw_saved_model"
    fixed = _run_onnx2tf(onnx_copy, raw)

    x = np.random.default_rng(0).normal(size=dims).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_outs = dict(zip(out_names, sess.run(None, {in_name: x})))
    loaded = tf.saved_model.load(str(raw))
    fn = loaded.signatures["serving_default"]
    ((arg_name, spec),) = fn.structured_input_signature[1].items()
    if list(spec.shape) != [dims[0], dims[2], dims[3], dims[1]]:
        raise RuntimeError(f"onnx2tf input {arg_name} has shape {list(spec.shape)}, expected NHWC "
                           f"{[dims[0], dims[2], dims[3], dims[1]]}")
    tf_outs = {k: v.numpy() for k, v in fn(**{arg_name: tf.constant(x.transpose(0, 2, 3, 1))}).items()}
    mapping, diffs = _match_outputs(onnx_outs, tf_outs)

    class Wrapped(tf.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec([dims[0], dims[2], dims[3], dims[1]], tf.float32,
                                                    name=in_name)])
        def serve(self, inp):
            produced = self.inner.signatures["serving_default"](**{arg_name: inp})
            out = {}
            for name, (key, perm) in mapping.items():
                t = produced[key]
                out[name] = tf.transpose(t, perm) if perm else tf.identity(t)
            return out

    wrapped = Wrapped(loaded)
    tf.saved_model.save(wrapped, str(staged), signatures={"serving_default": wrapped.serve})
    # the final SavedModel, checked once more end to end
    final_model = tf.saved_model.load(str(staged))  # kept referenced: the signature needs its variables
    final = final_model.signatures["serving_default"]
    got = {k: v.numpy() for k, v in final(**{in_name: tf.constant(x.transpose(0, 2, 3, 1))}).items()}
    final_diffs = {n: float(np.abs(got[n].astype(np.float64) - onnx_outs[n]).max()) for n in out_names}
    bad = {n: d for n, d in final_diffs.items() if not d <= TOLERANCE or got[n].shape != onnx_outs[n].shape}
    if bad:
        raise RuntimeError(f"wrapped SavedModel differs from onnxruntime: {bad}")
    grouped = grouped_convs(final)
    if grouped:
        raise RuntimeError(f"onnx2tf emitted {len(grouped)} grouped Conv2D that TFJS cannot run: "
                           + "; ".join(grouped[:5]))
    import onnx2tf
    check = {"onnx2tf_version": getattr(onnx2tf, "__version__", "?"), "max_abs_diff_vs_onnxruntime": final_diffs,
             "onnx2tf_outputs": {n: {"output": k, "transpose": p} for n, (k, p) in mapping.items()},
             "depthwise_convs_given_nhwc_input": fixed}
    (staged / REPORT_FILE).write_text(json.dumps(check, indent=1))
    io_spec = {"input": {"name": in_name, "layout": "NHWC"}, "outputs": {n: n for n in out_names}}
    return {"io_spec": io_spec, "check": check}


def main(argv: list[str]) -> int:
    onnx_path, staged = Path(argv[0]), Path(argv[1])
    try:
        result = _worker(onnx_path, staged)
    except RuntimeError as exc:
        result = {"error": str(exc)}
    Path("result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
