"""Stage 3, simplified ONNX -> TF SavedModel (``saved_model/``), through a swappable backend.

``--backend NAME`` selects ``converters/backend_NAME.py`` (``onnx_tf`` by default, ``onnx2tf``, ``tf_nhwc``), imported by name;
each has ``to_saved_model(onnx_path, out_dir, cfg) -> io spec`` (see docs/ARCHITECTURE.md). The io spec says
how the SavedModel's serving signature maps to the model signature (input name and layout, output keys); it goes
into the manifest for the runners. Whatever the backend, the SavedModel is refused (``converters.tf_graph_hazards``)
if it holds a graph pattern that aborts TensorFlow on some hosts.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from nanodet_ref.errors import UserError

from .context import StageContext, output_names, project_files
from .reproducible import canonical_fingerprint

NAME = "saved_model"
OUTPUT = "saved_model"
PACKAGES = ("onnx", "onnx-tf", "onnx2tf", "tensorflow", "tf_keras")


def backend_module(name: str):
    module = f"converters.backend_{name}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise UserError(f"--backend {name}: converters/backend_{name}.py is not available") from None
        raise
    if not callable(getattr(mod, "to_saved_model", None)):
        raise UserError(f"--backend {name}: converters/backend_{name}.py has no to_saved_model()")
    return mod


def code_files(ctx: StageContext) -> list[Path]:
    return project_files("converters/stage_saved_model.py", f"converters/backend_{ctx.options.backend}.py",
                         f"converters/{ctx.options.backend}/**/*.py",   # a backend's package, where it has one
                         "converters/tf_compat.py", "converters/tf_graph_hazards.py",
                         "converters/reproducible.py")


def key_options(ctx: StageContext) -> dict:
    return {"backend": ctx.options.backend}


def check_io_spec(spec, cfg) -> dict:
    if not isinstance(spec, dict) or not isinstance(spec.get("input"), dict) or not isinstance(spec.get("outputs"), dict):
        raise RuntimeError(f"backend returned a malformed io spec: {spec!r}")
    if spec["input"].get("layout") not in ("NCHW", "NHWC") or not spec["input"].get("name"):
        raise RuntimeError(f"backend io spec input needs a name and layout NCHW|NHWC: {spec['input']!r}")
    missing = [n for n in output_names(cfg.strides) if n not in spec["outputs"]]
    if missing:
        raise RuntimeError(f"backend io spec lacks outputs {missing}")
    return spec


def convert(src: Path, dst: Path, ctx: StageContext) -> dict:
    mod = backend_module(ctx.options.backend)
    dst.mkdir(parents=True)
    from .tf_compat import RUNTIME_NOISE, filtered_stderr
    from .tf_graph_hazards import refuse_hazards
    with filtered_stderr(RUNTIME_NOISE, label=f"stage {NAME}"):  # TF's no-GPU probe lines: not about the model
        spec = mod.to_saved_model(Path(src), Path(dst), ctx.cfg)
    if not (dst / "saved_model.pb").is_file():
        raise RuntimeError(f"backend {ctx.options.backend} wrote no saved_model.pb")
    canonical_fingerprint(dst)   # TF's random fingerprint uuid -> one derived from its hashes (reproducible bytes)
    refuse_hazards(dst, f"stage {NAME}: backend {ctx.options.backend}")  # no graph of ours may abort a user's TF
    return {"backend": ctx.options.backend, "io_spec": check_io_spec(spec, ctx.cfg)}
