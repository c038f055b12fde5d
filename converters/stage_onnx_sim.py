"""Stage 2, ONNX -> simplified ONNX (``model.sim.onnx``): onnxsim, then the registered ONNX rewrites, then the checker.

onnxsim folds constants and removes no-op nodes (checked against the unsimplified graph with onnxruntime on one
random input); the rewrites in ``patches.ONNX_PATCHES`` (``rewrite(model_proto, cfg) -> (model_proto, report)``)
run in order unless ``--patches none``; a rewrite with a ``wanted(options)`` runs only where it says so
(``equalize_channel_ranges``: ``--quantize uint8`` without ``--keep``, and ``auto``), so the other graphs stay as
they were; ``onnx.checker.check_model`` must accept the result.
"""
from __future__ import annotations

import contextlib
import io

from pathlib import Path

from contracts.signature import signature_io_spec

from .context import StageContext, project_files

NAME = "onnx_sim"
OUTPUT = "model.sim.onnx"
PACKAGES = ("onnx", "onnxsim", "onnxruntime")


def code_files(ctx: StageContext) -> list[Path]:
    return project_files("patches/*.py", "converters/stage_onnx_sim.py", "contracts/signature.py",
                         "contracts/io_spec.py")


def key_options(ctx: StageContext) -> dict:
    only = quantize_only_patches(ctx)
    return {"patches": ctx.options.patches, **({"quantize_only_patches": only} if only else {})}


def applies(mod, options) -> bool:
    """Whether an ONNX rewrite runs under these options (one with ``wanted(options)`` only where that says so)."""
    wanted = getattr(mod, "wanted", None)
    return wanted is None or bool(wanted(options))


def onnx_patches(ctx: StageContext) -> dict:
    if ctx.options.patches == "none":
        return {}
    import patches
    return {name: mod for name, mod in patches.ONNX_PATCHES.items() if applies(mod, ctx.options)}


def quantize_only_patches(ctx: StageContext) -> list[str]:
    """The option-dependent rewrites that run here (they enter the cache key: the graph differs with them)."""
    return [name for name, mod in onnx_patches(ctx).items() if getattr(mod, "wanted", None)]


def convert(src: Path, dst: Path, ctx: StageContext) -> dict:
    import onnx
    import onnxsim

    model = onnx.load(str(src))
    with contextlib.redirect_stdout(io.StringIO()):  # onnxsim prints "Checking 0/1..." for its own check
        simplified, ok = onnxsim.simplify(model, check_n=1)
    if not ok:
        raise RuntimeError("onnxsim: the simplified graph does not match the exported one")
    reports = {}
    for name, mod in onnx_patches(ctx).items():
        simplified, report = mod.rewrite(simplified, ctx.cfg)
        reports[name] = report
        ctx.log(f"      rewrite {name}: {report.get('summary', report)}")
    onnx.checker.check_model(simplified, full_check=True)
    onnx.save(simplified, str(dst))
    return {"patches": list(reports), "patch_reports": reports,
            "nodes": {"before": len(model.graph.node), "after": len(simplified.graph.node)},
            "io_spec": signature_io_spec(ctx.cfg, ctx.options.layout).to_dict()}
