"""SavedModel backend ``tf_nhwc`` (``--backend tf_nhwc``), the module ``converters.stage_saved_model`` loads by name.

The translation lives in the package ``converters/tf_nhwc/`` (its docstring says what is where); this module only
names its entry points: ``to_saved_model(onnx_path, out_dir, cfg) -> io spec``, ``build_module`` (the traced
tf.Module, nothing written), and what the tests read.
"""
from __future__ import annotations

from .tf_nhwc.backend import SIGNATURE, build_module, to_saved_model
from .tf_nhwc.conv import identity_batch_norm_bias
from .tf_nhwc.self_check import REPORT_FILE, TOLERANCE, check_against_onnxruntime

__all__ = ["REPORT_FILE", "SIGNATURE", "TOLERANCE", "build_module", "check_against_onnxruntime",
           "identity_batch_norm_bias", "to_saved_model"]
