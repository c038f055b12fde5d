"""What every stage gets besides its input artifact: the model source, the options and a place to log.

Every stage module has the same shape:
  ``NAME``, ``OUTPUT`` (path inside the artifact folder), ``PACKAGES`` (whose versions enter its cache key),
  ``code_files(ctx)`` (toolkit sources that shape its output; their hash enters the key),
  ``key_options(ctx)`` (the options that matter to it),
  ``convert(src, dst, ctx) -> dict`` (write ``dst`` from ``src``; return the manifest entry's extras, e.g.
  ``io_spec`` (``contracts.io_spec.IoSpec.to_dict()``) or ``patches``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from contracts.paths import PROJECT_ROOT

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
    hooks: dict = field(default_factory=dict)    # what a higher floor lends a stage (the auto quantization search)

    @property
    def cfg(self):
        return self.source.cfg


def project_files(*patterns: str) -> list[Path]:
    """Toolkit source files matching the glob patterns (relative to the project root)."""
    out = []
    for pattern in patterns:
        out.extend(p for p in PROJECT_ROOT.glob(pattern) if p.is_file())
    return sorted(set(out))

