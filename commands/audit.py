"""Command line of the int64 audit, for our artifacts and foreign ones.

  python -m commands audit --artifacts artifacts/m-416            # all stages + dynamic check
  python -m commands audit --onnx model.onnx                       # static ONNX audit only
  python -m commands audit --tfjs DIR [--saved-model DIR] [--preset vladmandic-nanodet-m | --io-spec J]
        [--model m-416] [--dynamic] [--class 61] [--json OUT]              # a TFJS model, ours or foreign

Exit status: 0 when no finding is left unfixed, 1 when some is, 2 for bad input (``error: ...``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from contracts.errors import UserError, run_main
from contracts.manifest import Manifest


def _cfg(args, manifest: Manifest | None = None):
    from nanodet_ref.config import load_config
    if args.config:
        return load_config(args.config)
    name = args.model or (manifest.model if manifest is not None else None) or "m-416"
    return load_config(name if isinstance(name, str) else "m-416")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands audit",
                                description="Find int64 values that TFJS narrows to int32, and what they change.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifacts", help="an artifact folder (model.onnx, model.sim.onnx, saved_model/, tfjs/)")
    src.add_argument("--onnx", help="one ONNX file (static audit only)")
    src.add_argument("--tfjs", help="a TFJS graph model folder or model.json")
    p.add_argument("--saved-model", help="with --tfjs: the SavedModel it came from (confirms narrowing by name)")
    p.add_argument("--reference-onnx", help="with --tfjs: the ONNX it came from")
    p.add_argument("--preset", help="with --tfjs: io spec preset of a known foreign model (vladmandic-nanodet-m)")
    p.add_argument("--io-spec", help="with --tfjs: io spec JSON or file (see docs/architecture.md)")
    p.add_argument("--model", help="model name (configs/<name>.yml) for the PyTorch reference; default m-416")
    p.add_argument("--config", help="config file instead of --model")
    p.add_argument("--dynamic", action="store_true", help="with --tfjs: run TFJS vs PyTorch per class")
    p.add_argument("--no-dynamic", action="store_true", help="with --artifacts: static audit only")
    p.add_argument("--images", help="image folder for the dynamic check (default: the shared COCO set)")
    p.add_argument("--limit", type=int, default=4, help="images for the dynamic check (default 4)")
    p.add_argument("--backend", default="wasm", choices=("wasm", "cpu"), help="TFJS backend (default wasm)")
    p.add_argument("--tolerance", type=float, help="flag classes whose max |diff| exceeds this (default 1e-4)")
    p.add_argument("--class", dest="classes", type=int, action="append", default=[],
                   help="report this class index against all classes (repeatable), e.g. --class 61")
    p.add_argument("--json", help="also write the result here (--artifacts always writes audit.json)")
    return p


def _main(argv=None) -> int:
    args = _parser().parse_args(argv)
    result = run(args)
    if args.json:
        from contracts.atomic import write_json
        write_json(Path(args.json), result, indent=1)
    return 1 if result["summary"]["unfixed"] else 0


def run(args) -> dict:
    from validation.int64_audit.audit import audit_artifact_dir, print_summary, static_audit, summary_counts
    from validation.int64_audit.dynamic import class_report

    if args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    if args.artifacts:
        adir = Path(args.artifacts)
        if not adir.is_dir():
            raise UserError(f"--artifacts {adir}: folder not found")
        cfg = _cfg(args, Manifest.load(adir))
        result = audit_artifact_dir(adir, cfg, dynamic=not args.no_dynamic, images=args.images, limit=args.limit,
                                    backend=args.backend, tolerance=args.tolerance)
    elif args.onnx:
        path = Path(args.onnx)
        if not path.is_file():
            raise UserError(f"--onnx {path}: file not found")
        result = static_audit({"onnx": path}, _cfg(args).reg_max if (args.model or args.config) else None)
        result["summary"] = summary_counts(result)
        print_summary(result, str(path))
    else:
        result = _run_tfjs(args)
    if args.classes and (result.get("dynamic") or {}).get("per_class_max_diff"):
        result["class_reports"] = [class_report(result["dynamic"], c) for c in args.classes]
        for r in result["class_reports"]:
            print(f"  class {r['class']}: max diff {r['max_diff']}, rank {r['rank']} of {r['of']} "
                  f"(1 = largest), {r['ratio_to_median']:.2f}x the median over classes"
                  if r['ratio_to_median'] is not None else f"  class {r['class']}: {r}")
    return result


def _run_tfjs(args) -> dict:
    from contracts.io_spec import io_spec_from_tfjs_signature, load_io_spec
    from contracts.presets import find_preset, preset_io_spec
    from contracts.signature import output_shapes

    from validation.int64_audit.audit import print_summary, run_dynamic_for, static_audit, summary_counts

    path = Path(args.tfjs)
    model_json = path / "model.json" if path.is_dir() else path
    if path.is_dir() and not model_json.is_file():
        jsons = sorted(path.glob("*.json"))
        model_json = jsons[0] if len(jsons) == 1 else model_json
    if not model_json.is_file():
        raise UserError(f"--tfjs {path}: no TFJS model.json there")
    io = None
    if args.preset:
        io = preset_io_spec(args.preset, f"--preset {args.preset}")
        args.model = args.model or find_preset(args.preset).get("model")
    elif args.io_spec:
        io = load_io_spec(args.io_spec)
    cfg = _cfg(args)
    if io is None:
        io = io_spec_from_tfjs_signature(model_json, output_shapes(cfg))
    stages = {"tfjs": model_json}
    if args.saved_model:
        stages["saved_model"] = Path(args.saved_model)
    if args.reference_onnx:
        stages["onnx_sim"] = Path(args.reference_onnx)
    result = static_audit(stages, cfg.reg_max, io.output_labels())
    result["model"] = cfg.name
    if args.dynamic:
        from validation.dataset import load_batch, resolve_images
        from validation.runners.pytorch import TorchRunner
        batch = load_batch(resolve_images(args.images, limit=args.limit), cfg)
        tol = args.tolerance if args.tolerance is not None else \
            float((cfg.toolkit.get("validation") or {}).get("raw_atol", 1e-4))
        result["dynamic"] = run_dynamic_for(model_json, io, TorchRunner.from_config(cfg), batch.tensor,
                                            cfg.reg_max, tol, result["findings"], args.backend)
        result["dynamic"]["image_files"] = [p.name for p in batch.images.paths]
    result["summary"] = summary_counts(result)
    print_summary(result, str(model_json))
    return result


def main(argv=None) -> int:
    return run_main(_main, argv)

