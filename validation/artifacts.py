"""Read what an artifact folder holds: its stage files, their io specs, the checkpoint its weights came from, and
whether its files are still the ones the manifest lists.

The manifest (``contracts.manifest``) is preferred; where it is absent the conventional file names
(docs/architecture.md) and, for TFJS, model.json's ``signature`` are used.
"""
from __future__ import annotations

import json
from pathlib import Path

from contracts.errors import UserError
from contracts.hashing import sha256_file
from contracts.io_spec import IoSpec, io_spec_from_tfjs_signature
from contracts.manifest import Manifest
from contracts.paths import PROJECT_ROOT, shared_dir
from contracts.signature import INPUT_NAME, output_names, output_shapes

STAGE_FILES = {"onnx": "model.onnx", "onnx_sim": "model.sim.onnx", "saved_model": "saved_model",
               "tfjs": "tfjs/model.json"}


def stage_path(artifact_dir: Path, manifest: Manifest, name: str) -> Path:
    """Where the stage's artifact is: the manifest's output path, else the conventional name."""
    output = manifest.stage_output(name)
    if output is None:
        return Path(artifact_dir) / STAGE_FILES[name]
    path = Path(artifact_dir) / output
    return path / "model.json" if name == "tfjs" and path.is_dir() else path


def present_stages(artifact_dir: Path, manifest: Manifest) -> dict[str, Path]:
    out = {}
    for name in STAGE_FILES:
        p = stage_path(artifact_dir, manifest, name)
        if p.exists():
            out[name] = p
    return out


def stage_io_spec(manifest: Manifest, name: str, path: Path, cfg) -> IoSpec:
    """The manifest's io spec of the stage, else (TFJS) the one model.json's signature says, else the signature's
    own names (the ONNX stages)."""
    spec = manifest.io_spec(name, output_names(cfg.strides))
    if spec is not None:
        return spec
    if name == "tfjs":
        return io_spec_from_tfjs_signature(path, output_shapes(cfg))
    return IoSpec.identity(output_names(cfg.strides), INPUT_NAME)


def tfjs_quantization(model_json: Path) -> str | None:
    """'float16' / 'uint8' / 'uint16' when the TFJS weights are stored quantized, else None."""
    try:
        data = json.loads(Path(model_json).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    kinds = {w["quantization"].get("dtype") for g in data.get("weightsManifest", []) for w in g.get("weights", [])
             if isinstance(w.get("quantization"), dict)}
    kinds.discard(None)
    return "+".join(sorted(kinds)) if kinds else None


# -- the weights ----------------------------------------------------------------------------------------------

def expand_recorded_path(text: str) -> Path | None:
    if not text:
        return None
    if text.startswith("$NANODET_SHARED/"):
        root = shared_dir()
        return root / text[len("$NANODET_SHARED/"):] if root is not None else None
    p = Path(text)
    return p if p.is_absolute() else PROJECT_ROOT / p


def reference_checkpoint(prov: dict, cfg, given: str | Path | None = None) -> Path | None:
    """The checkpoint file whose sha256 matches the artifact's provenance (None for random weights)."""
    from nanodet_ref.checkpoint import resolve_checkpoint

    if prov.get("kind") == "random":
        return None
    candidates = [Path(given)] if given else []
    candidates += [expand_recorded_path(prov.get("checkpoint") or ""), resolve_checkpoint(cfg, None)]
    want = prov.get("sha256")
    seen = []
    for c in candidates:
        if c is None or not c.is_file():
            continue
        digest = sha256_file(c)
        if not want or digest == want:
            return c
        seen.append(f"{c} (sha256 {digest[:12]}...)")
    if given:
        raise UserError(f"--checkpoint {given}: sha256 differs from the artifact's weights ({str(want)[:12]}...)")
    raise UserError(f"cannot find the checkpoint the artifact was converted from (sha256 {str(want)[:12]}..., "
                    f"recorded as {prov.get('checkpoint')}); tried {', '.join(seen) or 'nothing found'}: "
                    f"give --checkpoint")


# -- file hashes ----------------------------------------------------------------------------------------------

def verify_hashes(artifact_dir: Path, manifest: Manifest) -> list[str]:
    """Problems found: '<stage>: <file> sha256 differs from manifest' / 'missing'."""
    problems = []
    for name in manifest.stage_names():
        out = manifest.stage_output(name) or STAGE_FILES.get(name, "")
        base = Path(artifact_dir) / out
        base_dir = base if base.is_dir() else base.parent
        for rel, want in manifest.stage_files(name).items():
            p = base_dir / rel
            if not p.is_file():
                problems.append(f"{name}: {p.relative_to(artifact_dir)} missing (listed in manifest)")
            elif sha256_file(p) != want:
                problems.append(f"{name}: {p.relative_to(artifact_dir)} sha256 differs from manifest")
    return problems
