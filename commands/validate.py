"""Command line: ``python -m commands validate | accept | check | foreign``.

validate  run every stage of an artifact folder against PyTorch; writes validation.json, report.md, pictures/
          into ``validations/<name>/`` of the folder, named after the data (``default``, the images folder's
          name, ``-limit<N>``, ...): the accepted figures at the top of the folder are never touched
accept    make a validation (of the given data; default: the default images) the accepted figures: promotes its
          ad-hoc result where it passed and measured the current stage files, else validates first
check     CI regression check without re-conversion: manifest sha256 of every file, then a fresh validation on the
          accepted run's images (written to check.json) compared with the accepted validation.json; exit 1 naming
          stage and metric
foreign   validate a TFJS model the toolkit did not make, given an io spec or a preset
Exit codes: 0 pass, 1 validation failure or regression, 2 bad input (``error: <message>``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from contracts.errors import ReportedError, UserError, run_main
from contracts.paths import artifacts_dir, shared_path

from validation.runners.tfjs_node import BACKENDS


class ValidationFailed(ReportedError):
    """A stage failed or regressed: one line naming it, exit code 1."""


def _common(p: argparse.ArgumentParser, artifacts: bool = True) -> None:
    p.add_argument("--model", help="model name (configs/NAME.yml), e.g. m-416")
    p.add_argument("--config", help="path to a NanoDet config (upstream schema)")
    p.add_argument("--checkpoint", help="checkpoint the reference loads (default: the artifact's, by sha256)")
    p.add_argument("--images", help="folder of images (default: the shared 40 COCO images)")
    p.add_argument("--annotations", help="COCO instances JSON for AP (default: the shared set's)")
    if artifacts:
        p.add_argument("--artifacts", help="artifact folder, or the root holding <model>/ (default: artifacts/)")
    p.add_argument("--tfjs-backend", default="wasm", choices=BACKENDS, help="TFJS backend in Node (default wasm)")
    p.add_argument("--limit", type=int, help="only the first N images (quick runs)")
    p.add_argument("--input-size", metavar="W,H", help="the model at this input size (converted with --input-size; "
                                                       "its folder is <model>-WxH)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m commands", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate an artifact folder against PyTorch")
    _common(v)
    v.add_argument("--stages", help="comma-separated subset of onnx,onnx_sim,saved_model,tfjs, or the browser stages "
                                    "tfjs_chromium,tfjs_webgl_f16 (headless Chromium; run only when named)")
    v.add_argument("--localize", action="store_true",
                   help="localise every stage, passing ones too: the first intermediate tensor that differs from "
                        "PyTorch (failing stages are always localised)")
    a = sub.add_parser("accept", help="make a validation the accepted figures that check compares with")
    _common(a)
    c = sub.add_parser("check", help="regression check of converted artifacts (no re-conversion)")
    _common(c)
    c.add_argument("--stages", help="check only these stages (comma-separated); file hashes are always verified")
    f = sub.add_parser("foreign", help="validate a TFJS model the toolkit did not make")
    _common(f, artifacts=False)
    f.add_argument("--tfjs", help="folder (or model.json) of the TFJS graph model")
    f.add_argument("--io-spec", help="io spec as JSON text or a JSON file")
    f.add_argument("--preset", help="built-in io spec (and model location) of a known artifact, e.g. "
                                    "vladmandic-nanodet-m")
    f.add_argument("--out", help="where the report goes (default artifacts/foreign-<name>/)")
    return parser


def _config(args):
    from nanodet_ref.config import load_config

    if args.model and args.config:
        raise UserError("give either --model NAME or --config PATH, not both")
    if not args.model and not args.config:
        raise UserError("give --model NAME (e.g. m-416) or --config PATH")
    from nanodet_ref.input_size import parse_input_size, with_input_size

    return with_input_size(load_config(args.model or args.config), parse_input_size(args.input_size))


def sized_for_folder(cfg, folder: Path, args):
    """The config at the input size the folder was converted at, where its manifest records one (``--input-size``
    at conversion) and none was asked for here: ``--artifacts artifacts/m-416-320x320`` needs no --input-size."""
    from contracts.manifest import Manifest
    from nanodet_ref.input_size import with_input_size

    recorded = (Manifest.load(folder, strict=False).data.get("inputs") or {}).get("input_size")
    if args.input_size is None and isinstance(recorded, list) and tuple(recorded) != tuple(cfg.input_size):
        _log(f"{folder.name} was converted at input size {recorded[0]}x{recorded[1]} (manifest): using that size")
        return with_input_size(cfg, tuple(recorded))
    return cfg


def artifact_folder(args, cfg) -> Path:
    if args.artifacts:
        root = Path(args.artifacts)
        if (root / "manifest.json").is_file() or (root / "model.onnx").is_file() or (root / "tfjs").is_dir():
            return root
        if (root / cfg.name).is_dir():
            return root / cfg.name
        raise UserError(f"--artifacts {root}: neither an artifact folder nor a folder holding {cfg.name}/")
    folder = artifacts_dir() / cfg.name
    if not folder.is_dir():
        raise UserError(f"{folder}: artifact folder not found: convert first "
                        f"(python -m commands convert --model {cfg.name}) or give --artifacts")
    return folder


def _stages(text):
    if not text:
        return None
    from validation.browser_stages import BROWSER_STAGES
    known = ("onnx", "onnx_sim", "saved_model", "tfjs", *BROWSER_STAGES)
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in known]
    if bad:
        raise UserError(f"--stages: unknown {', '.join(bad)} (choose from {', '.join(known)})")
    return names


def _failed(report: dict) -> list[str]:
    return [f"{n}: {f}" for n, s in report["stages"].items() if not s.get("pass") for f in s.get("failures", [])]


def cmd_validate(args) -> int:
    from converters.pipeline import artifact_lock

    from validation.api import adhoc_dir, adhoc_name, validate_artifacts

    cfg = _config(args)
    folder = artifact_folder(args, cfg)
    cfg = sized_for_folder(cfg, folder, args)
    stages = _stages(args.stages)
    out = adhoc_dir(folder, adhoc_name(args.images, args.annotations, args.limit, stages, args.tfjs_backend))
    with artifact_lock(folder, _log):
        report = validate_artifacts(folder, cfg, args.images, args.annotations, args.tfjs_backend, args.checkpoint,
                                    stages, limit=args.limit, out_dir=out,
                                    localize="all" if args.localize else "failing")
    print(f"wrote {out / 'validation.json'} and report.md (the accepted figures, {folder / 'validation.json'}, "
          f"are unchanged; `accept` with the same options makes these the accepted ones)", file=sys.stderr)
    if not report["pass"]:
        raise ValidationFailed("validation FAILED: " + "; ".join(_failed(report)[:6]))
    return 0


def cmd_accept(args) -> int:
    from contracts.manifest import Manifest
    from converters.pipeline import artifact_lock

    from validation.accept import describes_current_stages, promote, read_report
    from validation.api import adhoc_dir, adhoc_name, validate_artifacts

    cfg = _config(args)
    folder = artifact_folder(args, cfg)
    cfg = sized_for_folder(cfg, folder, args)
    out = adhoc_dir(folder, adhoc_name(args.images, args.annotations, args.limit, None, args.tfjs_backend))
    with artifact_lock(folder, _log):
        manifest = Manifest.load(folder)
        report = read_report(out / "validation.json")
        if report is not None and describes_current_stages(report, folder, manifest):
            _log(f"[accept] {out.relative_to(folder)} measured the current stage files: promoting it")
        else:
            report = validate_artifacts(folder, cfg, args.images, args.annotations, args.tfjs_backend,
                                        args.checkpoint, limit=args.limit, out_dir=out)
        if not report["pass"]:
            raise ValidationFailed(f"validation FAILED, not accepted ({folder / 'validation.json'} is unchanged): "
                                   + "; ".join(_failed(report)[:6]))
        accepted = promote(out, folder)
    print(f"accepted: {accepted} (from {out.relative_to(folder)}, {report.get('images')} images)", file=sys.stderr)
    return 0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_check(args) -> int:
    from converters.pipeline import artifact_lock

    cfg = _config(args)
    folder = artifact_folder(args, cfg)
    cfg = sized_for_folder(cfg, folder, args)
    with artifact_lock(folder, _log):
        return _check(args, cfg, folder)


def _check(args, cfg, folder: Path) -> int:
    from contracts.atomic import write_json
    from contracts.manifest import Manifest

    from validation import artifacts as art
    from validation.accept import accepted_data, describes_current_stages
    from validation.api import validate_artifacts
    from validation.evaluate import tolerances
    from validation.regression import compare_reports

    accepted_path = folder / "validation.json"
    if not accepted_path.is_file():
        raise UserError(f"{accepted_path}: no accepted figures (convert with validation, or run "
                        f"`python -m commands accept`)")
    try:
        accepted = json.loads(accepted_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{accepted_path}: not valid JSON ({exc.msg})") from None
    except OSError as exc:
        raise UserError(f"{accepted_path}: not readable ({exc.strerror or exc.__class__.__name__})") from None
    if not isinstance(accepted, dict):
        raise UserError(f"{accepted_path}: not a validation report (a JSON object is expected)")
    manifest = Manifest.load(folder)
    hash_problems = art.verify_hashes(folder, manifest)
    if not manifest:
        hash_problems.append("manifest.json absent: file hashes not verified")
    for p in hash_problems:
        print(f"[check] {p}", file=sys.stderr)
    only = _stages(args.stages)
    images, annotations, files, limit = args.images, args.annotations, None, args.limit
    if images is None and annotations is None:   # the accepted run's own images: metrics stay comparable
        images, annotations, files = accepted_data(accepted)
        if files is not None:
            files, limit = (files[:args.limit] if args.limit else files), None
    if manifest and accepted.get("stage_digests") and not describes_current_stages(accepted, folder, manifest):
        print(f"[check] note: {accepted_path.name} measured other stage files than the manifest lists "
              f"(run `accept` to measure these)", file=sys.stderr)
    current = validate_artifacts(folder, cfg, images, annotations, args.tfjs_backend, args.checkpoint,
                                 only, json_name="check.json", md_name="check.md", pictures=0, limit=limit,
                                 only_files=files, localize="none")
    regressions, notes = compare_reports(accepted, current, tolerances(cfg)["raw_atol"],
                                         None if only is None else ["pytorch", *only])
    regressions = [f"manifest: {p}" for p in hash_problems if "absent" not in p] + regressions
    result = {"accepted": accepted_path.name, "regressions": regressions, "notes": notes,
              "pass": not regressions}
    current["regression_check"] = result
    write_json(folder / "check.json", current)
    for n in notes:
        print(f"[check] note: {n}", file=sys.stderr)
    if regressions:
        raise ValidationFailed("regression: " + "; ".join(regressions[:8]))
    print(f"[check] {folder.name}: no regression against {accepted_path.name}", file=sys.stderr)
    return 0


def check_foreign_out(out: Path) -> None:
    """The report of a foreign model goes to a new or empty folder, or one holding such a report already: its
    validation.json, report.md and pictures/ would otherwise overwrite a user's files of the same names."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    try:
        earlier = json.loads((out / "validation.json").read_text())
    except (OSError, ValueError):
        earlier = None
    if any(out.iterdir()) and not (isinstance(earlier, dict) and earlier.get("foreign") is True):
        raise UserError(f"--out {out}: not empty and holds no earlier foreign-model report: give a new or empty "
                        f"folder")


def cmd_foreign(args) -> int:
    from contracts.io_spec import load_io_spec
    from contracts.presets import find_preset, preset_io_spec
    from contracts.signature import output_names

    from validation.api import validate_foreign

    if args.preset and args.io_spec:
        raise UserError("give --preset or --io-spec, not both")
    tfjs = args.tfjs
    if args.preset:
        preset = find_preset(args.preset)
        if not args.model and not args.config:
            args.model = preset["model"]
        cfg = _config(args)
        io = preset_io_spec(args.preset, f"preset {args.preset}", output_names(cfg.strides))
        if tfjs is None:
            found = shared_path(*preset["shared_path"])
            if found is None:
                raise UserError(f"--preset {args.preset}: its model is in the shared folder, which is absent; "
                                f"give --tfjs DIR")
            tfjs = found
        name = args.preset
    else:
        if not args.io_spec:
            raise UserError("give --io-spec JSON|FILE (or --preset NAME)")
        if not tfjs:
            raise UserError("give --tfjs DIR (the TFJS graph model's folder)")
        cfg = _config(args)
        io = load_io_spec(args.io_spec, "--io-spec", output_names(cfg.strides))
        name = Path(tfjs).name if Path(tfjs).is_dir() else Path(tfjs).parent.name
    out = Path(args.out) if args.out else artifacts_dir() / f"foreign-{name}"
    check_foreign_out(out)
    command = "python -m commands " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = validate_foreign(tfjs, cfg, io, out, args.images, args.annotations, args.tfjs_backend,
                              args.checkpoint, limit=args.limit, command=command)
    print(f"wrote {out / 'validation.json'} and report.md", file=sys.stderr)
    if not report["pass"]:
        raise ValidationFailed("validation FAILED: " + "; ".join(_failed(report)[:6]))
    return 0


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return {"validate": cmd_validate, "accept": cmd_accept, "check": cmd_check,
            "foreign": cmd_foreign}[args.command](args)


def main(argv=None) -> int:
    return run_main(_main, argv)

