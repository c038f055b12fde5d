"""Per-tensor localisation: where, in topological order, a stage first stops computing what PyTorch computes.

A stage that fails (and, asked with ``--localize``, every stage) gets ``first_divergence`` in validation.json:
the first tensor of the stage's ONNX graph whose value differs from its reference by more than the stage's
tolerance, the node that computes it and its inputs' differences (docs/validation.md, "Localisation").

==================  ===========================================================================================
``torch_taps``      every module call of the PyTorch reference, with the exporter's scope name for it
``onnx_taps``       an ONNX graph's structure, its instrumented copy (every tensor an output), onnxruntime on it
``mapping``         which ONNX tensor holds which module output (the exporter's scopes; folded BatchNorms)
``graphs``          one graph prepared: instrumented, run, mapped
``tf_taps``         the instrumented graph through the stage's backend to a SavedModel, read back in NCHW
``onnx2tf_worker``  the child process that runs onnx2tf on it
``tfjs_taps``       that SavedModel through the tfjs converter, run by TFJS in Node, read back in NCHW
``first_divergence`` the references (PyTorch, else an earlier stage where it agreed) and the judgement
``stages``          the whole localisation of the stages of an artifact folder
``hook``            what the validation calls: which stages, and their entries in validation.json
``report_md``       the report.md section and the console lines
==================  ===========================================================================================
"""
from __future__ import annotations

from .stages import IMAGES, LOCALIZED, Job, localize_stages

__all__ = ["IMAGES", "LOCALIZED", "Job", "localize_stages"]
