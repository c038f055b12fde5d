"""Import-time substitutes that let onnx-tf 1.10 and tensorflowjs 4.22 import next to TensorFlow 2.19.

Both converters import, at module load, packages that this toolchain does not install (they do not exist for, or
do not import with, TF 2.19 + onnx2tf; see the project's toolchain notes, combination (b)). None of them is needed
to convert a NanoDet graph, so :func:`install` puts a tiny stand-in into ``sys.modules`` for each one that cannot
be found. A real package, if someone installs it, always wins: a stand-in is only added where
``importlib.util.find_spec`` finds nothing.

The stand-ins, one by one:

``tensorflow_addons`` (imported by ``onnx_tf/handlers/backend/hardmax.py``)
    What: a module with ``seq2seq.hardmax``. Why: onnx-tf's Hardmax handler decorates itself with
    ``tfa.seq2seq.hardmax`` at import time; the package does not import with TF >= 2.16.
    Safe because: ``hardmax`` here is the exact TF-only definition (one-hot of the arg-max over the last axis,
    in the input's dtype), so even a graph that has a Hardmax node converts correctly. NanoDet has none.

``tensorflow_probability`` (imported by ``onnx_tf/handlers/backend/bernoulli.py``)
    What: a module with ``distributions.Bernoulli`` that raises when constructed. Why: onnx-tf imports it at
    load time for its Bernoulli handler only, and does not declare it as a dependency.
    Safe because: it is only called while converting an ONNX ``Bernoulli`` node (random sampling, never in a
    detector); such a graph fails loudly with a message naming the missing package instead of converting wrong.

``tensorflow_decision_forests`` (imported by ``tensorflowjs/converters/tf_saved_model_conversion_v2.py``)
    What: an empty module. Why: the converter imports it only so that TF-DF's custom op kernels register
    (for converting decision-forest SavedModels); the installable TF-DF/ydf builds break protobuf here.
    Safe because: nothing of the module is used for a plain graph; a SavedModel holding TF-DF ops would fail
    the converter's op check ("unsupported ops") instead of converting.

``tensorflowjs.converters.jax_conversion`` (imported by ``tensorflowjs/converters/__init__.py``)
    What: a module whose ``convert_jax`` raises. Why: it imports ``jax.experimental.jax2tf`` at load time and
    jax is not installed. The substitute is the tensorflowjs submodule, not ``jax`` itself, so that libraries
    probing for jax (Keras picks its backend that way) are not misled.
    Safe because: it is only the JAX -> TFJS entry point, which the toolkit never calls.

``pkg_resources`` (imported by ``tensorflow_hub/__init__.py``, which tensorflowjs imports) -- scoped, not global
    What: a module with ``parse_version`` only, present in ``sys.modules`` just while ``tensorflow_hub`` is
    imported by :func:`import_tensorflowjs`, then removed again. Why: tensorflow_hub checks the TF version with
    ``pkg_resources.parse_version`` at import time, and setuptools >= 81 no longer ships ``pkg_resources``.
    Safe because: ``parse_version`` is ``packaging.version.parse``, which is what pkg_resources re-exports; the
    stand-in is gone after that one import, so code that probes for pkg_resources later (pytest, tensorboard)
    sees the truth. Where a real pkg_resources exists it is used.

:func:`install` also sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless already set) and absl's Python logger to WARNING so
that TensorFlow's info lines do not drown the progress output; it only affects logging.

Call :func:`install` before importing ``onnx_tf``, and :func:`import_tensorflowjs` to import the TFJS converter
(in-process); or run the TFJS converter as ``python -m converters.tfjs_entry`` (a subprocess that does the same).
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import types

from .stderr_filter import filtered_stderr

MARKER = "__nanodet_tfjs_substitute__"


def _absent(name: str) -> bool:
    """True where the top-level package ``name`` cannot be imported."""
    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _module(name: str, doc: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name, doc)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    setattr(mod, MARKER, True)
    for key, value in attrs.items():
        setattr(mod, key, value)
    return mod


def _hardmax(logits, name=None):
    """One-hot of the arg-max over the last axis, in the input's dtype (tfa.seq2seq.hardmax)."""
    import tensorflow as tf
    logits = tf.convert_to_tensor(logits, name="logits")
    depth = tf.shape(logits)[-1]
    return tf.one_hot(tf.argmax(logits, axis=-1), depth, dtype=logits.dtype, name=name)


class _Bernoulli:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("ONNX Bernoulli needs tensorflow_probability, which this toolkit does not "
                                  "install (see contracts/tf_environment.py)")


def _convert_jax(*args, **kwargs):
    raise NotImplementedError("tensorflowjs' JAX conversion needs jax, which this toolkit does not install "
                              "(see contracts/tf_environment.py)")


def _tensorflow_addons() -> dict[str, types.ModuleType]:
    seq2seq = _module("tensorflow_addons.seq2seq", "substitute: hardmax only", hardmax=_hardmax)
    top = _module("tensorflow_addons", "substitute for tensorflow_addons (contracts/tf_environment.py)",
                  seq2seq=seq2seq, __path__=[])
    return {"tensorflow_addons": top, "tensorflow_addons.seq2seq": seq2seq}


def _tensorflow_probability() -> dict[str, types.ModuleType]:
    dists = _module("tensorflow_probability.distributions", "substitute: Bernoulli raises", Bernoulli=_Bernoulli)
    top = _module("tensorflow_probability", "substitute for tensorflow_probability (contracts/tf_environment.py)",
                  distributions=dists, __path__=[])
    return {"tensorflow_probability": top, "tensorflow_probability.distributions": dists}


def _tensorflow_decision_forests() -> dict[str, types.ModuleType]:
    return {"tensorflow_decision_forests": _module(
        "tensorflow_decision_forests", "substitute for tensorflow_decision_forests (contracts/tf_environment.py)",
        __path__=[])}


def _jax_conversion() -> dict[str, types.ModuleType]:
    return {"tensorflowjs.converters.jax_conversion": _module(
        "tensorflowjs.converters.jax_conversion", "substitute: convert_jax raises (contracts/tf_environment.py)",
        convert_jax=_convert_jax)}


SUBSTITUTES = {
    "tensorflow_addons": _tensorflow_addons,
    "tensorflow_probability": _tensorflow_probability,
    "tensorflow_decision_forests": _tensorflow_decision_forests,
    "tensorflowjs.converters.jax_conversion": _jax_conversion,
}


def _jax_missing() -> bool:
    try:
        return importlib.util.find_spec("jax") is None
    except (ImportError, ValueError):
        return True


# Lines TensorFlow's C++ side writes to stderr while it is imported, before its log level applies: GPU plugins
# registered twice by the pip wheel and the absl notice about it. They say nothing about the conversion.
IMPORT_NOISE = re.compile(r"Unable to register cu(FFT|DNN|BLAS) factory|computation placer already registered|"
                          r"All log messages before absl::InitializeLog\(\) is called")
# Lines it writes later, on a machine without a GPU, whenever a session or grappler starts (the SavedModel and
# TFJS stages): the CUDA probe's failure and grappler's device count / session start, written by C++ logging
# that TF_CPP_MIN_LOG_LEVEL does not reach. Also not about the conversion.
RUNTIME_NOISE = re.compile(r"failed call to cuInit|Number of eligible GPUs \(core count|"
                           r"single_machine\.cc:\d+\] Starting new session|"
                           r"All log messages before absl::InitializeLog\(\) is called")


def import_tensorflow():
    """Import TensorFlow with :data:`IMPORT_NOISE` filtered out of what it writes to stderr meanwhile (at the
    file-descriptor level: the lines come from C++). Every other line is passed on as it is written."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with filtered_stderr(IMPORT_NOISE, label="importing TensorFlow"):
        import tensorflow
    # Routine INFO lines of TF's saving code (renamed inputs, fingerprint path, sharding callback) would drown the
    # stage progress. A filter, not a level: absl resets its logger's level when TF imports it, and onnx-tf's pool
    # handler turns the verbosity up to INFO while it converts. Warnings and errors still show.
    absl_logger = logging.getLogger("absl")
    if _absl_warnings_only not in absl_logger.filters:
        absl_logger.addFilter(_absl_warnings_only)
    return tensorflow


def _absl_warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def install() -> list[str]:
    """Add the stand-ins that are needed; return the names added now (idempotent). Does not import TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TF's saving code logs routine INFO lines through absl's Python logger (renamed inputs, fingerprint path):
    # they drown the stage progress. Warnings and errors still show.
    logging.getLogger("absl").setLevel(logging.WARNING)
    added = []
    for name, build in SUBSTITUTES.items():
        if name in sys.modules:
            continue
        needed = _jax_missing() if name == "tensorflowjs.converters.jax_conversion" else _absent(name)
        if not needed:
            continue
        for mod_name, mod in build().items():
            sys.modules[mod_name] = mod
        added.append(name)
    return added


def import_tensorflow_hub():
    """Import tensorflow_hub, lending it a ``pkg_resources.parse_version`` only for that import if needed."""
    if "tensorflow_hub" in sys.modules:
        return sys.modules["tensorflow_hub"]
    lend = _absent("pkg_resources")
    if lend:
        from packaging.version import parse
        sys.modules["pkg_resources"] = _module("pkg_resources", "scoped substitute: parse_version only",
                                               parse_version=parse)
    try:
        import tensorflow_hub
    finally:
        if lend and getattr(sys.modules.get("pkg_resources"), MARKER, False):
            del sys.modules["pkg_resources"]
    return tensorflow_hub


def import_tensorflowjs():
    """Install the substitutes and import tensorflowjs' converter modules; returns ``tensorflowjs``."""
    install()
    import_tensorflow()
    import_tensorflow_hub()
    import tensorflowjs
    from tensorflowjs.converters import tf_saved_model_conversion_v2  # noqa: F401
    return tensorflowjs

