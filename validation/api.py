"""What the converter pipeline (and the CLI) calls: validate an artifact folder against the PyTorch reference.

``validate_artifacts(artifact_dir, cfg, images=None, annotations=None)`` reads manifest.json for the stages'
io specs and the weights provenance, rebuilds the reference with the same weights (checkpoint by sha256, or the
seed), runs every stage present on the same tensors and writes ``validation.json``, ``report.md`` and
``pictures/`` into the folder: the accepted figures that ``check`` compares with. Ad-hoc validations (other
images, a subset) go to ``validations/<name>/`` instead (``adhoc_name``); ``validate_foreign`` does the same for a
TFJS model the toolkit did not make. Run facts (when, how long, where) live in the report's ``run`` block only.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from contracts.errors import UserError
from contracts.manifest import Manifest
from contracts.signature import DEFAULT_LAYOUT
from converters.sources import display_path

from . import artifacts as art
from .dataset import check_annotation_coverage, load_batch, resolve_images
from .evaluate import evaluate_stages, order_stages, tolerances
from .report import console_table, write_report
from .runners.tfjs_node import TfjsNodeRunner


ADHOC_FOLDER = "validations"
MIXED_FACTS = ("quantize", "weight_types", "keep", "quantize_search")   # the TFJS stage's, for the report
RUN_STAGE_FACTS = ("seconds", "runner", "localization_seconds")   # per stage: timings, not results (run block)


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reference_runner(cfg, prov: dict, checkpoint=None, layout: str = DEFAULT_LAYOUT):
    """PyTorch with the artifact's weights: the checkpoint whose sha256 the manifest records, or the seed; in the
    artifact's output layout (read per level all the same)."""
    from .runners.pytorch import TorchRunner

    if prov.get("kind") == "random":
        return _random_runner(cfg, int(prov.get("seed", 0)), layout)
    if prov.get("kind") == "checkpoint":
        return TorchRunner.from_config(cfg, checkpoint=art.reference_checkpoint(prov, cfg, checkpoint),
                                       layout=layout)
    return TorchRunner.from_config(cfg, checkpoint=checkpoint, seed=int(cfg.toolkit.get("seed", 0) or 0),
                                   layout=layout)


def _random_runner(cfg, seed: int, layout: str = DEFAULT_LAYOUT):
    """Seeded random weights even where the config names a checkpoint that exists (the artifact used random)."""
    from nanodet_ref.checkpoint import use_random_weights
    from nanodet_ref.model import build_model

    from .runners.pytorch import TorchRunner

    model = build_model(cfg, layout)
    why = f"the artifact of {cfg.name} was converted from random weights (manifest)"
    return TorchRunner(model, use_random_weights(model, cfg, seed, why), cfg)


class BrokenRunner:
    """Stands for a stage whose artifact could not even be loaded: running it fails with the load error, so the
    stage FAILS in the report (and ``check`` names it) instead of aborting the whole validation."""

    def __init__(self, name: str, error: str):
        self.name, self.error = name, error

    def run(self, batch):
        raise RuntimeError(self.error)


def build_stage_runners(artifact_dir: Path, manifest: Manifest, cfg, tfjs_backend: str = "wasm",
                        only: list[str] | None = None) -> tuple[dict, dict]:
    """({stage name: runner}, {stage name: quantization or None}) for the stages present in the folder."""
    from .runners.tfjs_node import check_environment

    runners, quantized = {}, {}
    for name, path in art.present_stages(artifact_dir, manifest).items():
        if only and name not in only:
            continue
        quantized[name] = None
        if name == "tfjs":
            check_environment(tfjs_backend)  # no Node / no npm packages: the user's setup, not the artifact
            quantized[name] = art.tfjs_quantization(path)
        try:
            io = art.stage_io_spec(manifest, name, path, cfg)
            if name in ("onnx", "onnx_sim"):
                from .runners.onnxruntime_runner import OnnxRunner
                runners[name] = OnnxRunner(path, io, name=name)
            elif name == "saved_model":
                from .runners.saved_model import SavedModelRunner
                runners[name] = SavedModelRunner(path, io, name=name)
            elif name == "tfjs":
                runners[name] = TfjsNodeRunner(path, io, backend=tfjs_backend, name=name)
        except UserError as exc:
            runners[name] = BrokenRunner(name, f"cannot load: {exc}")
        except Exception as exc:  # TF / onnxruntime raise their own types on corrupt files
            runners[name] = BrokenRunner(name, f"cannot load: {exc.__class__.__name__}: {str(exc)[:200]}")
    if only:   # the browser stages run the tfjs stage's model in Chromium: only where asked for by name
        from .browser_stages import add_browser_stages
        tfjs = art.present_stages(artifact_dir, manifest).get("tfjs")
        add_browser_stages(runners, quantized, tfjs, art.stage_io_spec(manifest, "tfjs", tfjs, cfg) if tfjs else None,
                           only, art.tfjs_quantization(tfjs) if tfjs else None)
    return runners, quantized


def _annotations(image_set, cfg):
    """The annotations, their classes matched to the model's by name (``coco_ap.match_classes``). Where the match
    is partial or empty: one warning line, kept in the report's warnings (where no class matches there is no AP:
    the caller passes no annotations on, and the quantized stages are judged on matched detections)."""
    if image_set.annotations is None:
        return None
    from .coco_ap import CocoAnnotations

    ann = CocoAnnotations(image_set.annotations, cfg.class_names)
    check_annotation_coverage(image_set, ann)
    note = ann.classes.note(image_set.annotations)
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)
        image_set.warnings.append(note)
    return ann


def check_data(cfg, images=None, annotations=None) -> None:
    """The images and annotations a validation would use are there and fit the model (UserError otherwise);
    the converter calls this before it builds anything."""
    _annotations(resolve_images(images, annotations), cfg)


def select_files(image_set, files: list[str] | None):
    """Only the images named in ``files`` (in that order): the accepted run's ``image_files``, so that a check
    measures on exactly the images the accepted figures were measured on."""
    if files is None:
        return image_set
    by_name = {p.name: p for p in image_set.paths}
    missing = [f for f in files if f not in by_name]
    if missing:
        raise UserError(f"{len(missing)} image(s) of the accepted run are not in {image_set.source} "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): give --images")
    image_set.paths = [by_name[f] for f in files]
    return image_set


def data_record(images=None, annotations=None, limit: int | None = None) -> dict:
    """How to select these images again (``check`` reads it): folders as display paths, None = the default."""
    return {"images": display_path(Path(images)) if images is not None else None,
            "annotations": display_path(Path(annotations)) if annotations is not None else None,
            "limit": limit}


def split_run_facts(stages: dict) -> dict:
    """Take the per-stage run facts (seconds, the TFJS runner's timings) out of the stage entries; returns them."""
    facts = {}
    for name, entry in stages.items():
        moved = {k: entry.pop(k) for k in RUN_STAGE_FACTS if k in entry}
        if moved:
            facts[name] = moved
    return facts


def run_validation(out_dir: Path, cfg, reference, stage_runners: dict, quantized: dict, images=None,
                   annotations=None, extra: dict | None = None, json_name: str = "validation.json",
                   md_name: str | None = "report.md", pictures: int = 3, limit: int | None = None,
                   write: bool = True, log=_log_stderr, only_files: list[str] | None = None,
                   localize=None) -> dict:
    """Run the stages on the images, write the report into ``out_dir``; returns it. ``only_files``: just these
    image names (see :func:`select_files`). ``localize(stage entries, batch, reference)``: adds the stages'
    ``first_divergence`` (``validation.localize.hook``)."""
    image_set = select_files(resolve_images(images, annotations, limit), only_files)
    ann = _annotations(image_set, cfg)
    classes = ann.classes.as_dict() if ann is not None else None
    ann = None if ann is None or ann.classes.none else ann   # no class is a category: no AP, never a number
    batch = load_batch(image_set, cfg)
    shared_default = images is None and image_set.source.startswith("shared:")
    prov = getattr(reference, "provenance", {}) or {}
    whole_set = limit is None and only_files is None
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    stages, dets = evaluate_stages(cfg, batch, reference, stage_runners, ann, quantized,
                                   reference_ap_applies=shared_default and annotations is None and whole_set
                                   and prov.get("kind") == "checkpoint", log=log)
    if localize is not None:
        localize(stages, batch, reference)
    stage_facts = split_run_facts(stages)
    report = {
        "schema": 1,
        "model": cfg.name,
        "weights": prov.get("weights", "unknown"),
        "weights_provenance": prov,
        "images": len(image_set.paths),
        "image_source": image_set.source,
        "image_files": [p.name for p in image_set.paths],
        "annotations": image_set.annotations.name if image_set.annotations else None,
        "classes": classes,
        "tolerances": tolerances(cfg),
        "stages": {n: stages[n] for n in order_stages(stages)},
        "pass": all(s.get("pass") for s in stages.values()),
        "warnings": list(image_set.warnings),
        "data": data_record(images, annotations, limit),
    }
    if extra:
        report.update(extra)
    report["run"] = {"created": started, "seconds": round(time.perf_counter() - t0, 2), "stages": stage_facts}
    if write:
        write_report(Path(out_dir), report, dets, image_set.paths, cfg.class_names, json_name, md_name, pictures)
    log(console_table(report))
    return report


def validate_artifacts(artifact_dir, cfg, images=None, annotations=None, tfjs_backend: str = "wasm",
                       checkpoint=None, stages: list[str] | None = None, json_name: str = "validation.json",
                       md_name: str | None = "report.md", pictures: int = 3, limit: int | None = None,
                       write: bool = True, log=_log_stderr, out_dir=None, only_files: list[str] | None = None,
                       localize: str = "failing") -> dict:
    """Validate every stage found in ``artifact_dir``; returns the report dict, also written to ``out_dir``:
    by default the artifact folder itself (the accepted figures: what the converter writes after a build); the
    CLI's ``validate`` writes elsewhere (``adhoc_dir``). ``localize``: which stages get a per-tensor
    localisation, ``failing`` ones, ``all`` or ``none`` (``validation.localize.hook``)."""
    artifact_dir = Path(artifact_dir)
    if not artifact_dir.is_dir():
        raise UserError(f"{artifact_dir}: artifact folder not found (convert first)")
    manifest = Manifest.load(artifact_dir)
    if not manifest:
        log(f"[validate] WARNING: {artifact_dir}/manifest.json absent: conventional file names, "
            f"the config's weights")
    runners, quantized = build_stage_runners(artifact_dir, manifest, cfg, tfjs_backend, stages)
    if not runners:
        raise UserError(f"{artifact_dir}: no stage artifacts found (model.onnx, model.sim.onnx, saved_model/, "
                        f"tfjs/model.json)")
    prov = manifest.weights_provenance()
    reference = reference_runner(cfg, prov, checkpoint, manifest.layout)
    extra = {"artifact": manifest.name or artifact_dir.name,
             "tfjs_backend": tfjs_backend if "tfjs" in runners else None,
             "stage_digests": manifest.stage_digests(list(runners))}
    mixed = {k: v for k, v in (manifest.stage("tfjs") or {}).items() if k in MIXED_FACTS}
    if "tfjs" in runners and mixed.get("weight_types"):
        extra["weight_types"] = mixed   # --keep / --quantize auto: which weights got which type (report.md says)
    equalized = equalization_facts(manifest)
    if equalized and runners.keys() & {"onnx_sim", "saved_model", "tfjs"}:
        extra["equalization"] = equalized   # uint8 / auto: the graph those stages hold was rescaled (report.md says)
    from .localize.hook import stage_localizer
    tol = tolerances(cfg)
    localizer = stage_localizer(localize, artifact_dir, manifest, runners, tol["raw_atol"], tol["raw_rtol"],
                                tfjs_backend, log)
    return run_validation(Path(out_dir) if out_dir is not None else artifact_dir, cfg, reference, runners,
                          quantized, images, annotations, extra, json_name, md_name, pictures, limit, write, log,
                          only_files, localizer)


def equalization_facts(manifest) -> dict | None:
    """What ``equalize_channel_ranges`` did to the graph of the stages from onnx_sim on (None where it did not
    run): pairs, channels rescaled, the largest channel-range ratios before and after."""
    found = ((manifest.stage("onnx_sim") or {}).get("patch_reports") or {}).get("equalize_channel_ranges")
    if not found or not found.get("pairs"):
        return None
    return {k: found[k] for k in ("pairs", "channels_rescaled", "channels", "largest_range_ratio") if k in found}


def adhoc_name(images=None, annotations=None, limit: int | None = None, stages: list[str] | None = None,
               tfjs_backend: str = "wasm") -> str:
    """The folder name of an ad-hoc validation, after its data: ``default`` (the default images) or the images
    folder's name (its parent's for a folder called ``images``), then ``-ann-<annotations stem>``,
    ``-limit<N>``, ``-<stage>+<stage>``, ``-<tfjs backend>`` where not the defaults."""
    if images is None:
        parts = ["default"]
    else:
        path = Path(images).resolve()
        base = path.stem if path.is_file() else path.name
        parts = [f"{path.parent.name}-{base}" if base == "images" else base]
    if annotations is not None:
        parts.append(f"ann-{Path(annotations).stem}")
    if limit:
        parts.append(f"limit{limit}")
    if stages:
        parts.append("+".join(stages))
    if tfjs_backend != "wasm":
        parts.append(tfjs_backend)
    return "-".join(re.sub(r"[^A-Za-z0-9._+]+", "_", p) for p in parts if p)


def adhoc_dir(artifact_dir: Path, name: str) -> Path:
    """Where an ad-hoc validation of ``artifact_dir`` goes: ``validations/<name>/`` inside it."""
    return Path(artifact_dir) / ADHOC_FOLDER / name


def validate_foreign(tfjs_dir, cfg, io_spec, out_dir, images=None, annotations=None, tfjs_backend: str = "wasm",
                     checkpoint=None, seed: int | None = None, limit: int | None = None, command: str | None = None,
                     log=_log_stderr) -> dict:
    """A TFJS graph model made elsewhere, against the reference of ``cfg`` (its checkpoint or ``checkpoint``)."""
    from .runners.pytorch import TorchRunner

    model_json = Path(tfjs_dir)
    if model_json.is_dir():
        jsons = sorted(model_json.glob("*.json"))
        model_json = model_json / "model.json" if (model_json / "model.json").is_file() else \
            (jsons[0] if len(jsons) == 1 else model_json / "model.json")
    if not model_json.is_file():
        raise UserError(f"--tfjs {tfjs_dir}: no TFJS model.json found")
    runner = TfjsNodeRunner(model_json, io_spec, backend=tfjs_backend, name="tfjs")
    reference = TorchRunner.from_config(cfg, checkpoint=checkpoint,
                                        seed=int(seed if seed is not None else cfg.toolkit.get("seed", 0) or 0))
    extra = {"artifact": str(model_json.parent.name), "foreign": True, "io_spec": io_spec.to_dict(),
             "tfjs_backend": tfjs_backend, "command": command}
    return run_validation(out_dir, cfg, reference, {"tfjs": runner}, {"tfjs": art.tfjs_quantization(model_json)},
                          images, annotations, extra, limit=limit, log=log)
