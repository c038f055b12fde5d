"""The browser stages of a validation: the artifact's TFJS model in headless Chromium, on the same input tensors as
the Node ``tfjs`` stage, judged against PyTorch like every other stage.

- ``tfjs_chromium``: tfjs-backend-wasm in the page (1 thread; the kernels are those of the Node stage, so the
  fp32 criteria apply unchanged, or the quantized ones for float16 / uint8 weights);
- ``tfjs_webgl_f16``: tfjs-backend-webgl with ``WEBGL_FORCE_F16_TEXTURES`` ("half-float storage": every tensor
  stored in 16-bit float textures, as on phone GPUs without float32 textures). Headless Chromium has WebGL through
  SwiftShader, which computes in float32: what this stage measures is the rounding of the storage. Judged by the
  config's half-float tolerances (``evaluate.HALF_FLOAT``: ``half_float_raw_atol`` / ``half_float_raw_rtol`` on
  raw outputs and ``half_float_ap_delta`` on AP).

They run where Chromium is (``make browser``); elsewhere they are skipped with a one-line note. They are never part
of the accepted figures (``validation.json``): ``make convert BROWSER=1`` writes them to ``validations/browser/``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .evaluate import HALF_FLOAT

BROWSER_STAGES = ("tfjs_chromium", "tfjs_webgl_f16")
BROWSER_FOLDER = "browser"     # validations/<this>/ of an artifact folder


def stage_setup(name: str):
    """The page setup of a browser stage."""
    from .runners.chromium_session import PageSetup

    if name == "tfjs_chromium":
        return PageSetup(runtime="tfjs", backend="wasm", threads=1)
    if name == "tfjs_webgl_f16":
        return PageSetup(runtime="tfjs", backend="webgl", threads=0, flags={"WEBGL_FORCE_F16_TEXTURES": True})
    raise ValueError(f"unknown browser stage {name!r}")


def stage_criteria(name: str, weights_quantization: str | None) -> str | None:
    """What ``evaluate`` judges the stage by: the weights' quantization for the wasm stage (None: fp32), half-float
    storage (with the weights' quantization, where any) for the WebGL stage."""
    if name == "tfjs_webgl_f16":
        return f"{HALF_FLOAT}, {weights_quantization} weights" if weights_quantization else HALF_FLOAT
    return weights_quantization


def skip_note() -> str | None:
    """The one-line note why the browser stages cannot run here, or None where they can."""
    from .runners.chromium_session import browser_missing

    missing = browser_missing()
    return f"browser stages ({', '.join(BROWSER_STAGES)}) skipped: {missing}" if missing else None


def add_browser_stages(runners: dict, criteria: dict, tfjs_path: Path | None, io_spec, names, quantization,
                       log=None) -> None:
    """Put the runners of the browser stages ``names`` into ``runners`` (and how each is judged into
    ``criteria``); a one-line note instead where Chromium or the TFJS stage is absent."""
    from .runners.tfjs_chromium import TfjsChromiumRunner

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    wanted = [n for n in BROWSER_STAGES if n in names]
    if not wanted:
        return
    note = skip_note() if tfjs_path is not None else \
        f"browser stages ({', '.join(wanted)}) skipped: the artifact has no TFJS stage"
    if note:
        log(f"note: {note}")
        return
    for name in wanted:
        runners[name] = TfjsChromiumRunner(tfjs_path, io_spec, stage_setup(name), name=name, warmup=1)
        criteria[name] = stage_criteria(name, quantization)


def validate_in_browser(artifact_dir: Path, cfg, images=None, annotations=None, limit: int | None = None,
                        log=None) -> dict | None:
    """The browser stages of ``artifact_dir`` written to ``validations/browser/`` (``make convert BROWSER=1``):
    the report, or None (after a one-line note) where Chromium is absent."""
    from .api import adhoc_dir, validate_artifacts

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    note = skip_note()
    if note:
        log(f"note: {note}")
        return None
    return validate_artifacts(artifact_dir, cfg, images, annotations, stages=list(BROWSER_STAGES),
                              out_dir=adhoc_dir(artifact_dir, BROWSER_FOLDER), limit=limit, localize="none",
                              log=log)
