"""Which artifacts a bench run measures, and building the ones not converted yet.

Rows: PyTorch, onnxruntime (the artifact's ``model.onnx``), our TFJS models (``VARIANTS``: backend x weight
storage) and the peer, the shared TFJS artifact of the ``vladmandic-nanodet-m`` preset (``contracts.presets``,
its io spec included), measured only for the model that preset names. A variant not built yet is converted
through the converter's own command line in a child process (``python -m commands convert ...
--no-validate``; stages already built are reused); its progress streams to our stderr, and a failure carries
the converter's own last ``error:`` line (or how the process died), so that the row says why.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.manifest import Manifest
from contracts.paths import PROJECT_ROOT, artifacts_dir, shared_path
from contracts.presets import find_preset, preset_io_spec
from validation.artifacts import stage_io_spec

from .progress import log

VARIANTS = [  # (row label, --backend, --quantize)
    ("onnx-tf float32", "onnx_tf", None), ("onnx-tf float16", "onnx_tf", "float16"),
    ("onnx-tf uint8", "onnx_tf", "uint8"),
    ("onnx2tf float32", "onnx2tf", None), ("onnx2tf float16", "onnx2tf", "float16"),
    ("onnx2tf uint8", "onnx2tf", "uint8"),
    ("tf_nhwc float32", "tf_nhwc", None), ("tf_nhwc float16", "tf_nhwc", "float16"),
    ("tf_nhwc uint8", "tf_nhwc", "uint8"),
    ("tf_nhwc auto", "tf_nhwc", "auto"),   # per-weight mix (--quantize auto, docs/quantization.md)
]
PROFILED = "tf_nhwc float32"  # kernel-profiled next to the peer: where the time goes, and the convolutions' share
PEER_PRESET = "vladmandic-nanodet-m"
PEER_LABEL = "peer (vladmandic)"


@dataclass
class TfjsTarget:
    """One TFJS model to measure: its model.json, how its tensors map to the toolkit signature, and the name the
    bench's JSON gives it."""
    label: str
    model_json: Path
    io: IoSpec
    artifact: str


def wanted_labels(only: str | None) -> set[str] | None:
    """The row labels ``--only`` names (comma-separated), or None where it is not given (every row)."""
    return set(s.strip() for s in only.split(",")) if only else None


def selected(label: str, wanted: set[str] | None) -> bool:
    """Whether ``--only`` (None: not given) lets the row ``label`` run."""
    return wanted is None or label in wanted


def peer_measured(model: str) -> bool:
    """The peer is NanoDet-m 416: it is compared only with that model."""
    return find_preset(PEER_PRESET)["model"] == model


def peer_target() -> TfjsTarget:
    """The peer artifact in the shared folder, with its preset's io spec."""
    preset = find_preset(PEER_PRESET)
    model_json = shared_path(*preset["shared_path"])
    if model_json is None:
        raise UserError("peer artifact not found in the shared folder")
    return TfjsTarget(PEER_LABEL, model_json, preset_io_spec(PEER_PRESET, f"preset {PEER_PRESET}"),
                      "shared/" + "/".join(preset["shared_path"][:-1]))


def variant_target(label: str, artifact: Path, cfg) -> TfjsTarget:
    """One of our converted variants, with the io spec its manifest records (else its model.json's signature)."""
    model_json = artifact / "tfjs" / "model.json"
    io = stage_io_spec(Manifest.load(artifact), "tfjs", model_json, cfg)
    return TfjsTarget(label, model_json, io, artifact.name)


def variant_dir(model: str, backend: str, quantize: str | None, input_size: tuple[int, int] | None = None) -> Path:
    """Where the converter puts the variant (``m-416-onnx2tf-float16``, ``m-416-320x320-float16``...)."""
    from converters.options import ConvertOptions, artifact_name
    from nanodet_ref.input_size import sized_name
    name = sized_name(model, input_size) if input_size else model
    return artifacts_dir() / artifact_name(name, ConvertOptions(backend=backend, quantize=quantize))


def prepare_variants(model: str, wanted: set[str] | None, no_convert: bool,
                     input_size: tuple[int, int] | None = None) -> dict[str, Path | RuntimeError]:
    """The artifact folder of every selected variant, converted first where needed (so that every measurement
    sees the final artifacts), or the error that stopped it. ``no_convert``: a variant not built is an error.
    ``input_size``: the model at another size than its config's (``--input-size``)."""
    found: dict[str, Path | RuntimeError] = {}
    for label, backend, quantize in VARIANTS:
        if not selected(label, wanted):
            continue
        artifact = variant_dir(model, backend, quantize, input_size)
        try:
            if not no_convert:
                artifact = convert_variant(model, backend, quantize, input_size)
            elif not (artifact / "tfjs" / "model.json").is_file():
                raise RuntimeError(f"{artifact} not converted (run without --no-convert)")
            found[label] = artifact
        except RuntimeError as exc:
            found[label] = exc
            log(f"  {label}: {exc}")
    return found


def convert_variant(model: str, backend: str, quantize: str | None, input_size: tuple[int, int] | None = None
                    ) -> Path:
    """Convert one variant (``--no-validate``) in a child process; its progress streams to our stderr.

    RuntimeError where it fails, carrying the converter's own last ``error:`` line (or how the process died).
    """
    artifact = variant_dir(model, backend, quantize, input_size)
    cmd = [sys.executable, "-m", "commands", "convert", "--model", model, "--no-validate", "--backend", backend]
    if input_size:
        cmd += ["--input-size", f"{input_size[0]},{input_size[1]}"]
    if quantize:
        cmd += ["--quantize", quantize]
    t0 = time.perf_counter()
    log(f"  {artifact.name}: converting (stages already built are reused; the converter's progress follows)")
    # the converter's progress (stderr) goes on to ours line by line; its stage table (stdout) is not needed here
    code, tail = run_streaming_stderr(cmd)
    if code != 0:
        raise RuntimeError(f"convert {artifact.name} failed ({exit_text(code)}): {failure_line(tail)}")
    log(f"  {artifact.name}: ready ({time.perf_counter() - t0:.0f} s)")
    return artifact


def run_streaming_stderr(cmd: list[str], keep: int = 40) -> tuple[int, list[str]]:
    """Run ``cmd`` from the project root, writing its stderr on to ours as it comes; returns (exit code, its last
    ``keep`` stderr lines). Its stdout is dropped."""
    tail: deque[str] = deque(maxlen=keep)
    with subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          errors="replace") as proc:
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line.rstrip("\n"))
        code = proc.wait()
    return code, list(tail)


def exit_text(code: int) -> str:
    """``exit 2``, or ``killed by SIGABRT`` for a negative return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def failure_line(tail: list[str]) -> str:
    """The child's last ``error:`` line without the prefix, else its last non-empty line, else a note."""
    errors = [line for line in tail if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    lines = [line.strip() for line in tail if line.strip()]
    return lines[-1] if lines else "it printed nothing on stderr"
