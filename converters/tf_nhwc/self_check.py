"""The self-check of ``--backend tf_nhwc``: the written SavedModel against onnxruntime on one seeded input.

The translation is meant to be exact up to float32 rounding; this runs the SavedModel's serving signature and
onnxruntime on the same random input and refuses the result where any output differs by more than
``TOLERANCE`` relative to its scale. The figures go into ``tf_nhwc_check.json`` inside the SavedModel.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contracts.tf_environment import import_tensorflow

TOLERANCE = 1e-4  # max |diff| vs onnxruntime on one seeded input, relative to max(1, max |output|)
#                   (float32 rounding: m-416 3e-6, g-416 with random weights 6e-5 seen)
REPORT_FILE = "tf_nhwc_check.json"


def check_against_onnxruntime(saved_model_dir: Path, onnx_path: Path, dims, names, signature: str,
                              seed: int = 0) -> dict:
    """Max |diff| per output between the SavedModel's ``signature`` (NHWC input) and onnxruntime (NCHW ``dims``)
    on one seeded input, divided by max(1, max |onnxruntime output|)."""
    import onnxruntime as ort
    tf = import_tensorflow()
    x = np.random.default_rng(seed).normal(size=dims).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
    fn = tf.saved_model.load(str(saved_model_dir)).signatures[signature]
    (key,) = fn.structured_input_signature[1]   # the ONNX input's name (``input``, or upstream's ``data``)
    got = {k: v.numpy() for k, v in fn(**{key: tf.constant(x.transpose(0, 2, 3, 1))}).items()}
    diffs = {}
    for n in names:
        if got[n].shape != want[n].shape:
            raise RuntimeError(f"tf_nhwc output {n} has shape {list(got[n].shape)}, onnxruntime "
                               f"{list(want[n].shape)}")
        diffs[n] = float(np.abs(got[n].astype(np.float64) - want[n]).max()) / max(1.0, float(np.abs(want[n]).max()))
    return diffs


def verify_against_onnxruntime(saved_model_dir: Path, onnx_path: Path, dims, names, signature: str) -> dict:
    """Run :func:`check_against_onnxruntime`; raise beyond ``TOLERANCE``, else write ``REPORT_FILE`` into the
    SavedModel folder. Returns the diffs."""
    diffs = check_against_onnxruntime(saved_model_dir, onnx_path, dims, names, signature)
    bad = {n: d for n, d in diffs.items() if not d <= TOLERANCE}
    if bad:
        raise RuntimeError(f"tf_nhwc SavedModel differs from onnxruntime beyond {TOLERANCE}: {bad}")
    (Path(saved_model_dir) / REPORT_FILE).write_text(json.dumps({"max_rel_diff_vs_onnxruntime": diffs}, indent=1))
    return diffs
