"""Stage 3, simplified ONNX -> TF SavedModel (``saved_model/``), through a swappable backend.

``--backend NAME`` selects ``converters/backend_NAME.py`` (``tf_nhwc`` by default, ``onnx_tf``, ``onnx2tf``),
imported by name; each has ``to_saved_model(onnx_path, out_dir, cfg) -> io spec`` (see docs/architecture.md).
The io spec says how the SavedModel's serving signature maps to the model signature (input name and layout,
output keys); it goes into the manifest for the runners. Whatever the backend, the SavedModel is refused
(``converters.tf_graph_hazards``) if it holds a graph pattern that aborts TensorFlow on some hosts.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.signature import as_per_level, export_output_names

from .context import StageContext, project_files
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
                         "contracts/tf_environment.py", "contracts/io_spec.py", "converters/tf_graph_hazards.py",
                         "converters/reproducible.py")


def key_options(ctx: StageContext) -> dict:
    return {"backend": ctx.options.backend}


def backend_io_spec(spec, backend: str, cfg, layout: str) -> IoSpec:
    """The io spec a backend returned (its JSON form, by the exported model's output names), parsed, checked
    against the model signature of ``layout`` and read per level (``contracts.signature.as_per_level``); a bad
    one is the backend's fault, not the user's (RuntimeError)."""
    try:
        return as_per_level(IoSpec.from_dict(spec, f"backend {backend}", export_output_names(cfg, layout)), cfg,
                            layout)
    except UserError as exc:
        raise RuntimeError(str(exc)) from None


def convert(src: Path, dst: Path, ctx: StageContext) -> dict:
    mod = backend_module(ctx.options.backend)
    dst.mkdir(parents=True)
    from contracts.stderr_filter import filtered_stderr
    from contracts.tf_environment import RUNTIME_NOISE
    from .tf_graph_hazards import refuse_hazards
    with filtered_stderr(RUNTIME_NOISE, label=f"stage {NAME}"):  # TF's no-GPU probe lines: not about the model
        spec = mod.to_saved_model(Path(src), Path(dst), ctx.cfg)
    if not (dst / "saved_model.pb").is_file():
        raise RuntimeError(f"backend {ctx.options.backend} wrote no saved_model.pb")
    canonical_fingerprint(dst)   # TF's random fingerprint uuid -> one derived from its hashes (reproducible bytes)
    refuse_hazards(dst, f"stage {NAME}: backend {ctx.options.backend}")  # no graph of ours may abort a user's TF
    return {"backend": ctx.options.backend, "io_spec": backend_io_spec(spec, ctx.options.backend, ctx.cfg,
                                                                   ctx.options.layout).to_dict()}
