"""``python -m commands convert``: convert a NanoDet model to ONNX, SavedModel and TFJS (``make convert``).

    python -m commands convert --model m-416
    python -m commands convert --config path/to/nanodet.yml --checkpoint model.ckpt --quantize float16
    python -m commands convert --model m-416 --input-size 320,320     (artifacts/m-416-320x320)

After the stages, the int64 audit and then the validation run on the new folder (``post_conversion_checks``)
before it replaces the old one.

Bad input (unknown model, missing/corrupt/mismatched checkpoint, unsupported opset, an input size the model cannot
take, Node.js >= 20.9 missing where validation or the audit needs it) prints ``error: <one line>`` and exits 2,
leaving no finished-looking artifact. A tool failure or a failed validation exits 1.
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time

from commands.console import stage_table
from contracts.errors import UserError, run_main
from contracts.node_runtime import NODE_MINIMUM_TEXT, check_node_version
from contracts.signature import DEFAULT_LAYOUT, LAYOUTS, check_layout_applies
from converters.options import (BACKENDS, DEFAULT_AP_BUDGET, DEFAULT_BACKEND, PATCH_CHOICES, QUANTIZE_CHOICES,
                                SUPPORTED_OPSETS)
from converters.pipeline import STAGE_NAMES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m commands", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="PyTorch -> ONNX -> simplified ONNX -> SavedModel -> TFJS")
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="NAME", help="a model in configs/ (m-416, m-320, g-416, plus-m-416, ...)")
    which.add_argument("--config", metavar="PATH", help="your own nanodet config (upstream YAML schema)")
    c.add_argument("--checkpoint", metavar="PATH", help="checkpoint (.pth/.ckpt); default: the config's")
    c.add_argument("--opset", default=None, metavar="N",
                   help=f"ONNX opset ({SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}; default: the "
                        f"config's toolkit.export.opset, 10)")
    c.add_argument("--quantize", choices=QUANTIZE_CHOICES,
                   help="TFJS weight type (default float32); auto: per weight, the fewest bytes whose AP stays within "
                        "--ap-budget of PyTorch's (docs/quantization.md)")
    c.add_argument("--keep", action="append", metavar="PATTERNS",
                   help="with --quantize uint8|float16: comma-separated patterns of TFJS weight names that stay "
                        "float32")
    c.add_argument("--ap-budget", type=float, metavar="AP",
                   help=f"with --quantize auto: how far below PyTorch's AP it may go (default {DEFAULT_AP_BUDGET})")
    c.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help="ONNX -> SavedModel converter")
    c.add_argument("--patches", choices=PATCH_CHOICES, default="default", help="'none' exports without patches")
    c.add_argument("--layout", default=DEFAULT_LAYOUT, metavar="|".join(LAYOUTS),
                   help="the exported outputs: per-level (default) or upstream's single 'output' [1, N, C + 4 (reg_max "
                        "+ 1)] with input 'data', as upstream's tools/export_onnx.py")
    c.add_argument("--input-size", metavar="W,H",
                   help="convert at this input size instead of the config's data.val.input_size (the same weights; "
                        "the artifact is named <model>-WxH)")
    c.add_argument("--until", metavar="STAGE", choices=STAGE_NAMES,
                   help=f"build the stages up to this one only ({', '.join(STAGE_NAMES[:-1])}; default: all, to "
                        f"{STAGE_NAMES[-1]})")
    c.add_argument("--force", action="store_true", help="rebuild every stage even if cached")
    c.add_argument("--out", "--artifacts", dest="out", metavar="DIR",
                   help="artifact folder (default artifacts/<name>[-options])")
    c.add_argument("--images", metavar="DIR", help="images for validation (default: the shared COCO set)")
    c.add_argument("--annotations", metavar="JSON", help="COCO annotations for validation")
    c.add_argument("--no-validate", action="store_true", help="skip validation after converting")
    c.add_argument("--browser-stages", action="store_true",
                   help="also validate the TFJS model in headless Chromium (wasm, and WebGL with half-float "
                        "storage): written to validations/browser/; skipped with a note where Chromium is absent")
    c.add_argument("--limit", type=int, metavar="N", help="validate on the first N images only (quick runs)")
    c.add_argument("--no-localize", action="store_true",
                   help="do not localise a failing stage's first diverging tensor (quicker; `validate --localize` "
                        "does it later)")
    c.add_argument("--no-audit", action="store_true", help="skip the int64 audit after converting")
    return parser


def require_node(args) -> None:
    """Node.js >= 20.9 where a step of this run needs it: validation and the int64 audit run the TFJS model in
    Node. Converting alone (``--no-validate --no-audit``) does not: the TFJS stage and its JS module are written
    from Python."""
    needs = [what for what, skipped in (("validation", args.no_validate), ("the int64 audit", args.no_audit))
             if not skipped]
    if not needs:
        return
    why = f"{' and '.join(needs)} run the TFJS model in Node; --no-validate --no-audit converts without it"
    node = shutil.which("node")
    if node is None:
        raise UserError(f"node (Node.js) not found on PATH: install Node.js >= {NODE_MINIMUM_TEXT} ({why})")
    check_node_version(node, why)


def check_paths(args) -> None:
    """Fail before the long conversion on paths that the later steps would reject."""
    from pathlib import Path
    if args.images and not Path(args.images).exists():
        raise UserError(f"--images {args.images}: not found")
    if args.annotations and not Path(args.annotations).is_file():
        raise UserError(f"--annotations {args.annotations}: file not found")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: exists and is not a folder")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: give a number of images >= 1")


def post_conversion_checks(args, cfg, folder) -> dict:
    """What runs on the new artifact folder before it replaces the old one (the pipeline's ``post``): the int64
    audit, then the validation, each unless skipped. Returns {label: {"result", "seconds"}}."""
    from converters.context import log_stderr as log
    from validation.api import validate_artifacts
    from validation.int64_audit import audit_artifact_dir

    plan = (("audit", not args.no_audit, "--no-audit", "validation.int64_audit.audit_artifact_dir",
             audit_artifact_dir, {}),
            ("validation", not args.no_validate, "--no-validate", "validation.api.validate_artifacts",
             validate_artifacts, {"images": args.images, "annotations": args.annotations, "limit": args.limit,
              "localize": "none" if args.no_localize else "failing"}))
    done = {}
    for label, wanted, flag, name, fn, kwargs in plan:
        if not wanted:
            log(f"{label}: skipped ({flag})")
            continue
        log(f"{label}: {name} ...")
        t0 = time.perf_counter()
        done[label] = {"result": fn(folder, cfg, **kwargs), "seconds": time.perf_counter() - t0}
    if getattr(args, "browser_stages", False):
        from validation.browser_stages import validate_in_browser
        log("browser stages: validation.browser_stages.validate_in_browser ...")
        t0 = time.perf_counter()
        done["browser stages"] = {"result": validate_in_browser(folder, cfg, args.images, args.annotations,
                                                                args.limit, log), "seconds": time.perf_counter() - t0}
    return done


def quantize_hooks(options, source, args) -> dict:
    """``--quantize auto``: the search the TFJS stage calls (it measures AP on the validation's images)."""
    if options.quantize != "auto":
        return {}
    from converters.context import log_stderr
    from converters.tfjs_mixed import AUTO_HOOK
    from validation.quantize_search.planner import AutoQuantizer
    from validation.runners.tfjs_node import check_environment

    check_environment("wasm")   # the search confirms its choice in TFJS (Node), --no-validate or not
    return {AUTO_HOOK: AutoQuantizer(source, args.images, args.annotations, log_stderr)}


def quantize_summary(manifest: dict) -> list[str]:
    """The mixed weight types' lines for the console (none for float32 and plain uint8 / float16)."""
    from validation.quantize_search.report_md import console_lines

    return console_lines((manifest.get("stages") or {}).get("tfjs") or {})


def cmd_convert(args) -> int:
    require_node(args)
    from converters.options import ConvertOptions
    from converters.pipeline import convert
    from converters.sources import resolve

    check_paths(args)
    from nanodet_ref.input_size import parse_input_size

    source = resolve(model=args.model, config=args.config, checkpoint=args.checkpoint,
                     input_size=parse_input_size(args.input_size))
    if not args.no_validate and (args.images is not None or args.annotations is not None):
        from validation.api import check_data
        check_data(source.cfg, args.images, args.annotations)   # the user's data, checked before anything is built
    opset = args.opset if args.opset is not None else source.cfg.toolkit.get("export", {}).get("opset", 10)
    options = ConvertOptions(opset=opset, quantize=args.quantize, backend=args.backend, patches=args.patches,
                             layout=args.layout, keep=",".join(args.keep or ()), ap_budget=args.ap_budget)
    check_layout_applies(source.cfg, options.layout)
    from converters.pipeline import STAGES

    stages = STAGES[:STAGE_NAMES.index(args.until) + 1] if args.until else STAGES
    result = convert(source, options, out=args.out, force=args.force,
                     post=functools.partial(post_conversion_checks, args, source.cfg), stages=stages,
                     stage_hooks=quantize_hooks(options, source, args))
    print(stage_table(result.stages))
    weights = result.manifest.get("weights")
    print(f"{result.artifact_dir}  ({weights}; stages {result.seconds:.1f} s)")
    validation = (result.hooks.get("validation") or {}).get("result")
    if isinstance(validation, dict) and validation.get("stages"):
        from validation.report import console_table

        print(f"\nvalidation on {validation.get('images')} images ({validation.get('weights')}); "
              f"details: {result.artifact_dir}/report.md")
        print(console_table(validation))
    for line in quantize_summary(result.manifest):
        print(line)
    if isinstance(validation, dict) and validation.get("pass") is False:
        print(f"error: validation failed (see {result.artifact_dir}/report.md)", file=sys.stderr)
        return 1
    browser = (result.hooks.get("browser stages") or {}).get("result")
    if isinstance(browser, dict) and browser.get("pass") is False:
        print(f"error: browser stages failed (see {result.artifact_dir}/validations/browser/report.md)",
              file=sys.stderr)
        return 1
    return 0


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's C++ info/warning lines drown the progress
    if args.command == "convert":
        return cmd_convert(args)
    return 2


def main(argv=None) -> int:
    return run_main(_main, argv, crash_message="conversion failed")

