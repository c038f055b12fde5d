"""The TF import environment (``contracts/tf_environment.py``): stand-ins only for what is missing, both
converters importing in a fresh process, TF's noise filtered from stderr and every other line kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT


PY = sys.executable


# --- import substitutes (contracts/tf_environment.py) -------------------------------------------------------------

def run_py(code, extra_path=None):
    path = os.pathsep.join([str(PROJECT_ROOT)] + ([str(extra_path)] if extra_path else []))
    return subprocess.run([PY, "-c", code], cwd=PROJECT_ROOT, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=300)


def test_substitutes_fill_only_what_is_missing(tmp_path):
    code = ("import sys, json; from contracts import tf_environment as c; added = c.install(); "
            "print(json.dumps({'added': added, 'again': c.install(), 'tf': 'tensorflow' in sys.modules, "
            "'pkg_resources': getattr(sys.modules.get('pkg_resources'), c.MARKER, False), "
            "'hardmax': callable(sys.modules['tensorflow_addons'].seq2seq.hardmax)}))")
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["added"]) == {"tensorflow_addons", "tensorflow_probability", "tensorflow_decision_forests",
                                 "tensorflowjs.converters.jax_conversion"}
    assert out["again"] == [] and out["tf"] is False and out["pkg_resources"] is False and out["hardmax"]

    real = tmp_path / "tensorflow_addons"   # an installed real package is never shadowed
    real.mkdir()
    (real / "__init__.py").write_text("REAL = True\n")
    r = run_py("from contracts import tf_environment as c; c.install(); import tensorflow_addons as t; print(t.REAL)",
               extra_path=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


@pytest.mark.slow
def test_both_converters_import_in_a_fresh_process():
    """onnx-tf and the TFJS converter import with the substitutes; hardmax is the real definition; the scoped
    pkg_resources stand-in is gone afterwards."""
    code = ("import sys; from contracts import tf_environment as c; c.install(); import onnx_tf.backend; "
            "c.import_tensorflowjs(); import tensorflow as tf, tensorflow_addons as tfa; "
            "h = tfa.seq2seq.hardmax(tf.constant([[1., 3., 2.], [5., 0., 0.]])).numpy().tolist(); "
            "print(h, getattr(sys.modules.get('pkg_resources'), c.MARKER, False))")
    r = run_py(code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]] False"


def test_filtered_stderr_drops_runtime_noise_of_children_and_keeps_the_rest(tmp_path):
    """contracts.stderr_filter.filtered_stderr works at the file-descriptor level: lines a child process writes are
    held too; noise is dropped, every other line written on in order."""
    import os
    import subprocess
    import sys

    from contracts.tf_environment import RUNTIME_NOISE
    from contracts.paths import PROJECT_ROOT

    child = tmp_path / "child.py"
    child.write_text("import sys\n"
                     "sys.stderr.write('E0000 cuda_platform.cc:51] failed call to cuInit: INTERNAL\\n')\n"
                     "sys.stderr.write('kept 2\\n')\n")
    parent = tmp_path / "parent.py"
    parent.write_text("import subprocess, sys\n"
                      "from contracts.stderr_filter import filtered_stderr\n"
                      "from contracts.tf_environment import RUNTIME_NOISE\n"
                      "with filtered_stderr(RUNTIME_NOISE, label='test block'):\n"
                      "    print('kept 1', file=sys.stderr)\n"
                      f"    subprocess.run([sys.executable, {str(child)!r}])\n"
                      "    print('I0000 single_machine.cc:374] Starting new session', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, str(parent)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["kept 1", "kept 2"]
    assert RUNTIME_NOISE.search("I0000 00:00:1 devices.cc:67] Number of eligible GPUs (core count >= 8, compute")


def test_tensorflow_import_noise_is_filtered_and_other_lines_kept(tmp_path):
    """contracts.tf_environment.import_tensorflow: TF's import-time C++ lines about GPU plugins are dropped
    (they come before its log level applies); in a fresh process nothing of them reaches stderr."""
    import subprocess
    import sys

    from contracts.tf_environment import IMPORT_NOISE
    from contracts.paths import PROJECT_ROOT

    assert IMPORT_NOISE.search("E0000 00:00:1 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting")
    assert IMPORT_NOISE.search("W0000 00:00:1 computation_placer.cc:177] computation placer already registered.")
    assert not IMPORT_NOISE.search("Traceback (most recent call last):")
    bad_pb = tmp_path / "saved_model.pb"
    bad_pb.write_bytes(b"not a proto")
    for code in ("from contracts.tf_environment import import_tensorflow; import_tensorflow()",
                 # the int64 audit reads SavedModel protos: its first TF import goes through the filter too
                 "from validation.int64_audit.tf_static import _load_saved_model\n"
                 f"try: _load_saved_model(__import__('pathlib').Path({str(tmp_path)!r}))\nexcept Exception: pass"):
        code += "\nimport sys; print('imported' if 'tensorflow' in sys.modules else 'absent')"
        proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr[-2000:]
        assert not [line for line in proc.stderr.splitlines() if IMPORT_NOISE.search(line)], proc.stderr[-2000:]
