"""Stage 1, PyTorch -> ONNX (``model.onnx``): build the reference model, load the weights, export.

Uses the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``; opset 10 by default, 11-17 on request).
Input ``input`` [1, 3, H, W] (fixed shape), outputs named by ``contracts.signature.output_names``; with
``--layout upstream`` upstream's export signature instead (input ``data``, one output ``output``). Before export
the torch-level patches registered in ``patches.TORCH_PATCHES`` are applied, in order, to a deep copy of the
model (the reference model is never changed); ``--patches none`` skips them. The manifest records which ran and
where the weights came from.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

from contracts.signature import export_input_name, export_output_names, signature_io_spec

from .context import StageContext, project_files

NAME = "onnx"
OUTPUT = "model.onnx"
PACKAGES = ("torch", "onnx")


def code_files(ctx: StageContext) -> list[Path]:
    return project_files("nanodet_ref/*.py", "patches/*.py", "converters/stage_onnx.py", "contracts/signature.py",
                         "contracts/io_spec.py")


def key_options(ctx: StageContext) -> dict:
    return {"opset": ctx.options.opset, "patches": ctx.options.patches, "weights": ctx.source.weights_id,
            "layout": ctx.options.layout}


def torch_patches(ctx: StageContext) -> dict:
    if ctx.options.patches == "none":
        return {}
    import patches
    return dict(patches.TORCH_PATCHES)


def build_weighted_model(ctx: StageContext):
    """The reference model with its weights; returns (model, provenance dict from load_weights)."""
    from nanodet_ref.checkpoint import load_weights
    from nanodet_ref.model import build_model
    src = ctx.source
    model = build_model(ctx.cfg, ctx.options.layout)
    provenance = load_weights(model, ctx.cfg, src.checkpoint if src.checkpoint_given else None, seed=src.seed)
    if provenance.get("kind") == "checkpoint" and provenance.get("sha256") != src.checkpoint_sha256:
        raise RuntimeError(f"loaded checkpoint sha256 {provenance.get('sha256')} differs from the hashed input "
                           f"{src.checkpoint_sha256} (file changed during the run?)")
    return model.eval(), provenance


def convert(src, dst: Path, ctx: StageContext) -> dict:
    import torch

    model, provenance = build_weighted_model(ctx)
    export_model = copy.deepcopy(model)
    ran, reports = [], {}
    for name, mod in torch_patches(ctx).items():
        export_model = mod.apply(export_model, ctx.cfg, ctx.options.opset)
        if isinstance(export_model, tuple):  # a patch may say what it changed
            export_model, reports[name] = export_model
        ran.append(name)
        summary = reports.get(name, {}).get("summary")
        ctx.log(f"      patch {name} applied" + (f": {summary}" if summary else ""))
    export_model.eval()
    w, h = ctx.cfg.input_size
    example = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        # The patches read static shapes on purpose (constants in the graph, no Shape ops): the tracer's
        # warnings about it are expected. With the PAN patch the only opset-10 Resize left is an integer
        # nearest x2, exact at every opset, so the exporter's opset-10 Resize caution does not apply.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"patches\.")
        if "pan_resample_opset10" in ran:
            warnings.filterwarnings("ignore", message=r"You are trying to export the model with onnx:Resize")
        layout = ctx.options.layout
        torch.onnx.export(export_model, (example,), str(dst), input_names=[export_input_name(layout)],
                          output_names=export_output_names(ctx.cfg, layout), opset_version=ctx.options.opset,
                          do_constant_folding=True, dynamo=False)
    return {"weights": provenance, "patches": ran, "patch_reports": reports,
            "io_spec": signature_io_spec(ctx.cfg, ctx.options.layout).to_dict()}
