"""Read what an artifact folder says about itself: stage files, io specs, weights provenance, file hashes.

Tolerant by design: the manifest (written by ``converters``) is preferred; where a field is absent the
conventional file names (docs/ARCHITECTURE.md) and, for TFJS, model.json's ``signature`` are used.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from nanodet_ref.checkpoint import sha256_file
from nanodet_ref.errors import UserError
from nanodet_ref.model import INPUT_NAME, output_names
from nanodet_ref.paths import PROJECT_ROOT, shared_dir

from .runners.base import IoSpec

STAGE_FILES = {"onnx": "model.onnx", "onnx_sim": "model.sim.onnx", "saved_model": "saved_model",
               "tfjs": "tfjs/model.json"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(artifact_dir: Path) -> dict:
    path = Path(artifact_dir) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    return data if isinstance(data, dict) else {}


def _stage_entry(manifest: dict, name: str) -> dict:
    stages = manifest.get("stages")
    if isinstance(stages, dict) and isinstance(stages.get(name), dict):
        return stages[name]
    if isinstance(stages, list):
        for s in stages:
            if isinstance(s, dict) and s.get("name") == name:
                return s
    return {}


def stage_path(artifact_dir: Path, manifest: dict, name: str) -> Path:
    """Where the stage's artifact is: the manifest's output path, else the conventional name."""
    entry = _stage_entry(manifest, name)
    for key in ("output", "path", "file"):
        if isinstance(entry.get(key), str):
            p = Path(artifact_dir) / entry[key]
            if name == "tfjs" and p.is_dir():
                p = p / "model.json"
            return p
    return Path(artifact_dir) / STAGE_FILES[name]


def present_stages(artifact_dir: Path, manifest: dict) -> dict[str, Path]:
    out = {}
    for name in STAGE_FILES:
        p = stage_path(artifact_dir, manifest, name)
        if p.exists():
            out[name] = p
    return out


def manifest_io_spec(manifest: dict, name: str) -> dict | None:
    entry = _stage_entry(manifest, name)
    for cand in (entry.get("io_spec"), entry.get("io"), (manifest.get("io_specs") or {}).get(name),
                 (manifest.get("io_spec") or {}).get(name) if isinstance(manifest.get("io_spec"), dict) else None):
        if isinstance(cand, dict) and "input" in cand and "outputs" in cand:
            return cand
    return None


def expected_shapes(cfg) -> dict[str, list[int]]:
    shapes = {}
    for s, (h, w) in zip(cfg.strides, cfg.feature_sizes()):
        shapes[f"cls_pred_stride_{s}"] = [1, h * w, cfg.num_classes]
        shapes[f"dis_pred_stride_{s}"] = [1, h * w, 4 * (cfg.reg_max + 1)]
    return shapes


def _dims(shape_proto) -> list[int] | None:
    try:
        return [int(d.get("size", -1)) for d in shape_proto["dim"]]
    except (KeyError, TypeError, ValueError):
        return None


def io_spec_from_tfjs_signature(model_json: Path, cfg) -> IoSpec:
    """Build the io spec from model.json's ``signature``: outputs by their key (the ONNX name survives through
    the SavedModel signature), else by unique shape; input layout from the input shape."""
    try:
        sig = json.loads(Path(model_json).read_text()).get("signature") or {}
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{model_json}: cannot read TFJS model.json ({exc.__class__.__name__})") from None
    inputs, outputs = sig.get("inputs") or {}, sig.get("outputs") or {}
    if len(inputs) != 1 or not outputs:
        raise UserError(f"{model_json}: model.json has no usable signature (one input, named outputs); "
                        f"give an io spec")
    (in_key, in_info), = inputs.items()
    dims = _dims(in_info.get("tensorShape", {})) or []
    layout = "NHWC" if len(dims) == 4 and dims[3] == 3 and dims[1] != 3 else "NCHW"
    mapping = {}
    want = expected_shapes(cfg)
    for sig_name, shape in want.items():
        for key, info in outputs.items():
            if key.split(":")[0] == sig_name:
                mapping[sig_name] = info.get("name", key)
                break
        else:
            same = [info.get("name", key) for key, info in outputs.items()
                    if _dims(info.get("tensorShape", {})) == shape]
            if len(same) != 1:
                raise UserError(f"{model_json}: cannot tell which output is {sig_name} from the signature "
                                f"({len(same)} outputs of shape {shape}); give an io spec")
            mapping[sig_name] = same[0]
    return IoSpec.from_dict({"input": {"name": in_info.get("name", in_key), "layout": layout},
                             "outputs": mapping}, str(model_json))


def stage_io_spec(manifest: dict, name: str, path: Path, cfg) -> IoSpec:
    spec = manifest_io_spec(manifest, name)
    if spec is not None:
        return IoSpec.from_dict(spec, f"manifest.json stages.{name}.io_spec", output_names(cfg.strides))
    if name == "tfjs":
        return io_spec_from_tfjs_signature(path, cfg)
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


# -- weights provenance ---------------------------------------------------------------------------------------

def weights_provenance(manifest: dict) -> dict:
    """{"kind": "checkpoint"|"random", "sha256", "checkpoint" (path as recorded), "seed", "weights"} or {}."""
    prov = {}
    for cand in (manifest.get("weights_provenance"), _stage_entry(manifest, "onnx").get("weights"),
                 manifest.get("weights") if isinstance(manifest.get("weights"), dict) else None):
        if isinstance(cand, dict) and cand.get("kind"):
            prov = dict(cand)
            break
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    if inputs.get("checkpoint"):
        prov.setdefault("kind", "checkpoint")
        prov["checkpoint"] = inputs["checkpoint"]
        prov.setdefault("sha256", inputs.get("checkpoint_sha256"))
    elif inputs and inputs.get("seed") is not None:
        prov.setdefault("kind", "random")
        prov.setdefault("seed", inputs["seed"])
    if not prov and isinstance(manifest.get("weights"), str):
        m = re.match(r"random \(seed (\d+)\)", manifest["weights"])
        if m:
            prov = {"kind": "random", "seed": int(m.group(1))}
    if prov.get("kind") == "random" and "seed" not in prov:
        m = re.search(r"seed (\d+)", str(prov.get("weights", "")))
        prov["seed"] = int(m.group(1)) if m else 0
    return prov


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

def recorded_hashes(manifest: dict) -> dict[str, dict[str, str]]:
    """Per stage: {file path relative to the stage output: sha256} as recorded in the manifest."""
    out = {}
    stages = manifest.get("stages") if isinstance(manifest.get("stages"), dict) else {}
    for name, entry in stages.items():
        if not isinstance(entry, dict):
            continue
        for key in ("sha256", "files", "hashes", "outputs_sha256", "file_sha256"):
            val = entry.get(key)
            if isinstance(val, dict) and val and all(isinstance(v, str) and HEX64.match(v) for v in val.values()):
                out[name] = val
                break
    return out


def stage_digests(manifest: dict, names) -> dict[str, str]:
    """{stage: the manifest's digest of its output files} for the named stages that have one: what a validation
    report records it measured, so a report can be matched to the stage files it describes."""
    out = {}
    for name in names:
        digest = _stage_entry(manifest, name).get("digest")
        if isinstance(digest, str):
            out[name] = digest
    return out


def verify_hashes(artifact_dir: Path, manifest: dict) -> list[str]:
    """Problems found: '<stage>: <file> sha256 differs from manifest' / 'missing'."""
    problems = []
    for name, files in recorded_hashes(manifest).items():
        entry = _stage_entry(manifest, name)
        out = entry.get("output") or entry.get("path") or STAGE_FILES.get(name, "")
        base = Path(artifact_dir) / out
        base_dir = base if base.is_dir() else base.parent
        for rel, want in files.items():
            p = base_dir / rel
            if not p.is_file():
                problems.append(f"{name}: {p.relative_to(artifact_dir)} missing (listed in manifest)")
            elif sha256_file(p) != want:
                problems.append(f"{name}: {p.relative_to(artifact_dir)} sha256 differs from manifest")
    return problems
