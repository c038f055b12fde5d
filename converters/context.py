"""What every stage gets besides its input artifact: the model source, the options and a place to log.

Every stage module has the same shape:
  ``NAME``, ``OUTPUT`` (path inside the artifact folder), ``PACKAGES`` (whose versions enter its cache key),
  ``code_files(ctx)`` (toolkit sources that shape its output; their hash enters the key),
  ``key_options(ctx)`` (the options that matter to it),
  ``convert(src, dst, ctx) -> dict`` (write ``dst`` from ``src``; return the manifest entry's extras, e.g.
  ``io_spec`` or ``patches``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from nanodet_ref.paths import PROJECT_ROOT

from .options import ConvertOptions
from .sources import ModelSource


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class StageContext:
    source: ModelSource
    options: ConvertOptions
    artifact_dir: Path
    log: callable = log_stderr
    extras: dict = field(default_factory=dict)   # things a stage hands on within one run

    @property
    def cfg(self):
        return self.source.cfg


def project_files(*patterns: str) -> list[Path]:
    """Toolkit source files matching the glob patterns (relative to the project root)."""
    out = []
    for pattern in patterns:
        out.extend(p for p in PROJECT_ROOT.glob(pattern) if p.is_file())
    return sorted(set(out))


INPUT_NAME = "input"  # == nanodet_ref.model.INPUT_NAME (that module imports torch; a test checks they agree)


def output_names(strides) -> list[str]:
    """== nanodet_ref.model.output_names, without importing torch (cached runs stay fast)."""
    return [f"cls_pred_stride_{s}" for s in strides] + [f"dis_pred_stride_{s}" for s in strides]


def signature(cfg) -> dict:
    """The model's input/output contract, for the manifest."""
    w, h = cfg.input_size
    outputs = {}
    for s, (fh, fw) in zip(cfg.strides, cfg.feature_sizes()):
        outputs[f"cls_pred_stride_{s}"] = [1, fh * fw, cfg.num_classes]
    for s, (fh, fw) in zip(cfg.strides, cfg.feature_sizes()):
        outputs[f"dis_pred_stride_{s}"] = [1, fh * fw, 4 * (cfg.reg_max + 1)]
    return {"input": {"name": INPUT_NAME, "shape": [1, 3, h, w], "dtype": "float32", "layout": "NCHW",
                      "colour": "BGR", "mean": list(cfg.mean), "std": list(cfg.std)},
            "outputs": outputs}


def signature_io_spec(cfg) -> dict:
    """The io spec of an artifact that has the model signature itself (ONNX stages)."""
    w, h = cfg.input_size
    return {"input": {"name": INPUT_NAME, "layout": "NCHW", "shape": [1, 3, h, w]},
            "outputs": {n: n for n in output_names(cfg.strides)}}
