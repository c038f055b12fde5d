"""The validation's one entry into localisation: after the stages are judged, localise the ones that failed (or
all, when asked) and put ``first_divergence`` / ``localization`` into their entries.

Modes: ``failing`` (what ``validate_artifacts`` does by default: ``make convert`` and ``make validate``),
``all`` (``--localize`` / ``LOCALIZE=1``), ``none`` (``check``: a regression check compares figures, it does not
localise). Every localisable stage entry gets ``first_divergence``: ``None`` for a stage that passes (a stage
localised on request that passes keeps whatever an intermediate tensor showed in
``localization.intermediate_divergence``: its outputs decided), the divergence for one that failed. Not
localised: a stage whose runner did not run (nothing computed to compare) and quantised TFJS weights.
The time it took is a run fact (``localization_seconds``, moved into the report's ``run`` block).
"""
from __future__ import annotations

from pathlib import Path

from .stages import LOCALIZED, Job, localize_stages

MODES = ("failing", "all", "none")


def stage_localizer(mode: str, artifact_dir: Path, manifest: dict, runners: dict, atol: float, rtol: float,
                    tfjs_backend: str = "wasm", log=print):
    """A callable ``(stage entries, batch, reference runner) -> None`` for ``run_validation``, or None."""
    if mode not in MODES:
        raise ValueError(f"localize mode must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return None

    def localize(stages: dict, batch, reference) -> None:
        data = getattr(manifest, "data", manifest) or {}    # contracts.manifest.Manifest or its dict
        attach(stages, mode, Job(Path(artifact_dir), data, reference.model, batch.tensor, atol, rtol,
                                 dict(runners), tfjs_backend, log))
    return localize


def attach(stages: dict, mode: str, job: Job) -> None:
    """Localise the chosen stages of ``stages`` (entries by name, as ``evaluate_stages`` made them) in place."""
    present = [n for n in LOCALIZED if n in stages]
    for name in present:
        stages[name]["first_divergence"] = None
    wanted = [n for n in present if (mode == "all" or not stages[n].get("pass"))
              and stages[n].get("criteria") != "not run"]
    for name in present:
        if stages[name].get("criteria") == "not run" and not stages[name].get("pass"):
            stages[name]["localization"] = {"skipped": "the stage did not run: nothing to compare"}
    if not wanted:
        return
    for name, result in localize_stages(job, wanted).items():
        entry = stages[name]
        loc = dict(result["localization"])
        divergence = result["first_divergence"]
        if entry.get("pass") and divergence is not None:
            loc["intermediate_divergence"] = divergence
            loc.setdefault("notes", []).append(
                f"an intermediate tensor differs ({divergence['node']}, {divergence['op_type']}) while every output "
                f"passes: the outputs decide the verdict")
            divergence = None
        entry["first_divergence"] = divergence
        entry["localization"] = loc
        entry["localization_seconds"] = result.get("seconds")
