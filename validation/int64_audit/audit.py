"""The int64 audit of an artifact folder: static findings on every stage, the dynamic per-class check, audit.json.

Stages read: ``model.onnx`` (as exported), ``model.sim.onnx`` (after onnxsim and the ONNX patches, i.e. what TF
sees), ``saved_model/``, ``tfjs/model.json``. A finding in model.onnx is "fixed" when model.sim.onnx no longer has
it; a SavedModel finding is fixed when it does not survive into model.json (folded in int64 by the TFJS
converter); findings in model.sim.onnx and confirmed/suspect TFJS constants are unfixed. Every finding carries
the outputs and classes (or box sides) it can change, taken from the onnxruntime emulation of its ONNX origin.
"""
from __future__ import annotations

import sys
from pathlib import Path

from contracts.atomic import write_json
from contracts.errors import UserError
from contracts.manifest import Manifest

from .onnx_static import audit_onnx, load_onnx
from .tf_static import audit_saved_model, audit_tfjs

DEFAULT_IMAGES = 4


def _onnx_reference(path: Path) -> dict:
    """{tensor name and Constant node name: int values} of an ONNX graph, to match TFJS names against."""
    from patches.int64_clamp import int_constants
    model = load_onnx(path)
    consts = int_constants(model.graph)
    out = {k: v.reshape(-1).tolist() for k, v in consts.items() if v.size <= 64}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.name and node.output[0] in out:
            out[node.name] = out[node.output[0]]
    return out


def _affected(f: dict) -> dict:
    emu = (f.get("emulation") or {}).get("outputs")
    if emu:
        return {k: {kk: vv for kk, vv in v.items() if kk != "changed_channels"} for k, v in emu.items()}
    return {o: {"channels": "unknown (structural reach only)"} for o in f.get("reaches_outputs", [])}


def _onnx_key_names(f: dict) -> set:
    names = {f["name"]}
    if f.get("node"):
        names.add(f["node"])
    return names


def static_audit(stages: dict[str, Path], reg_max: int | None = None, io_names: dict | None = None) -> dict:
    """Static findings over the stages present: {"stages": {...}, "findings": [...]}."""
    per_stage, findings = {}, []
    onnx_by_name = {}
    if "onnx" in stages:
        per_stage["onnx"] = audit_onnx(stages["onnx"], "model.onnx", reg_max)
    if "onnx_sim" in stages:
        per_stage["onnx_sim"] = audit_onnx(stages["onnx_sim"], "model.sim.onnx", reg_max)
    sim_names = set()
    sim_nodes = set()
    for f in (per_stage.get("onnx_sim") or {}).get("findings", []):
        sim_names |= _onnx_key_names(f)
        sim_nodes |= {c["node"] for c in f["consumers"]}
    for stage in ("onnx", "onnx_sim"):
        for f in (per_stage.get(stage) or {}).get("findings", []):
            f["id"] = f"{stage}-{len([x for x in findings if x['stage'] == stage]) + 1}"
            f["stage"] = stage
            if stage == "onnx":
                gone = not (_onnx_key_names(f) & sim_names) and not ({c["node"] for c in f["consumers"]} & sim_nodes)
                f["fixed"] = bool(gone) if "onnx_sim" in stages else False
                if f["fixed"]:
                    f["fixed_by"] = "absent from model.sim.onnx (onnxsim + ONNX patches, int64_clamp)"
            else:
                f["fixed"] = False
            f["affected_outputs"] = _affected(f)
            for n in _onnx_key_names(f):
                onnx_by_name.setdefault(n, f)
            findings.append(f)
    reference = {}
    if "onnx_sim" in stages:
        reference.update(_onnx_reference(stages["onnx_sim"]))
    elif "onnx" in stages:
        reference.update(_onnx_reference(stages["onnx"]))
    if "saved_model" in stages:
        sm = audit_saved_model(stages["saved_model"])
        reference.update(sm.pop("int64_values"))
        per_stage["saved_model"] = sm
    if "tfjs" in stages:
        per_stage["tfjs"] = audit_tfjs(stages["tfjs"], reference, io_names)
        per_stage["tfjs"].pop("int64_origin_names", None)
    tfjs_matches = {f.get("matches") for f in (per_stage.get("tfjs") or {}).get("findings", [])}
    for k, f in enumerate((per_stage.get("saved_model") or {}).get("findings", []), 1):
        f["id"], f["stage"] = f"saved_model-{k}", "saved_model"
        origin = _onnx_origin(f["name"], onnx_by_name)
        if origin:
            f["onnx_origin"] = origin["id"]
        if "tfjs" in stages:
            f["reaches_tfjs"] = f["name"] in tfjs_matches
            f["fixed"] = not f["reaches_tfjs"]
            if f["fixed"]:
                f["fixed_by"] = "folded by the TFJS converter (not in model.json)"
        else:
            f["fixed"] = False
        f["affected_outputs"] = _affected(origin) if origin else \
            {o: {"channels": "unknown (structural reach only)"} for o in f.get("reaches_outputs", [])}
        findings.append(f)
    for k, f in enumerate((per_stage.get("tfjs") or {}).get("findings", []), 1):
        f["id"], f["stage"], f["fixed"] = f"tfjs-{k}", "tfjs", False
        origin = _onnx_origin(f.get("matches") or f["name"], onnx_by_name)
        if origin:
            f["onnx_origin"] = origin["id"]
        f["affected_outputs"] = _affected(origin) if origin else \
            {o: {"channels": "unknown (structural reach only)"} for o in f.get("reaches_outputs", [])}
        findings.append(f)
    for st in per_stage.values():
        st.pop("findings", None)
    return {"stages": {k: {"artifact": v["artifact"], "inventory": v["inventory"]} for k, v in per_stage.items()},
            "findings": findings}


def _onnx_origin(tf_name: str, onnx_by_name: dict):
    bare = tf_name
    for p in ("StatefulPartitionedCall/", "PartitionedCall/"):
        bare = bare[len(p):] if bare.startswith(p) else bare
    if "onnx_tf_prefix_" in bare:
        bare = bare.split("onnx_tf_prefix_", 1)[1]
    for cand in (bare, bare + "_output_0"):
        if cand in onnx_by_name:
            return onnx_by_name[cand]
    return None


def summary_counts(result: dict) -> dict:
    fs = result.get("findings", [])
    dyn = result.get("dynamic") or {}
    return {"findings": len(fs), "unfixed": sum(not f.get("fixed") for f in fs),
            "fixed": sum(bool(f.get("fixed")) for f in fs),
            "flagged_classes": [c["class"] for c in dyn.get("flagged_classes", [])],
            "outlier_classes": dyn.get("outlier_classes", [])}


def print_summary(result: dict, where: str, file=None) -> None:
    file = file or sys.stdout
    s = result["summary"]
    print(f"int64 audit of {where}: {s['findings']} finding(s), {s['unfixed']} unfixed, {s['fixed']} fixed",
          file=file)
    for name, st in result["stages"].items():
        inv = st["inventory"]
        brief = ", ".join(f"{k} {v}" for k, v in inv.items() if not isinstance(v, dict) or k == "int64_uses")
        print(f"  {name:12s} {brief}", file=file)
    for f in result["findings"]:
        state = "fixed" if f.get("fixed") else ("SUSPECT" if f.get("status") == "suspect" else "UNFIXED")
        uses = ", ".join(f"{c['op']} {c['role']}" for c in f.get("consumers", [])[:3])
        vals = f.get("original") or f.get("values")
        nar = f.get("narrowed", "")
        aff = "; ".join(f"{o}: " + ", ".join(f"{k} {v}" for k, v in e.items() if k != "shape")
                        for o, e in (f.get("affected_outputs") or {}).items())
        print(f"  [{state}] {f['id']} {f['name']}: {vals} -> {nar} used as {uses or '-'}; affects {aff or '-'}",
              file=file)
    dyn = result.get("dynamic")
    if dyn and "distribution" in dyn:
        d = dyn["distribution"]
        print(f"  dynamic (TFJS {dyn.get('backend')} vs PyTorch, {dyn.get('images')} images): per-class max diff "
              f"median {d['median']:.3g}, p90 {d['p90']:.3g}, max {d['max']:.3g} (class {d['argmax']}); "
              f"{len(dyn['flagged_classes'])} class(es) above {dyn['tolerance']:g}, outliers "
              f"{dyn['outlier_classes'] or 'none'}", file=file)
        for c in dyn["flagged_classes"][:10]:
            if c["outlier"] or c["explained_by"] != "unexplained":
                print(f"    class {c['class']}: max diff {c['max_diff']}, explained by {c['explained_by']}", file=file)
    elif dyn:
        print(f"  dynamic: {dyn.get('status')}", file=file)


def audit_artifact_dir(artifact_dir: Path, cfg, dynamic: bool = True, images=None, limit: int = DEFAULT_IMAGES,
                       backend: str = "wasm", tolerance: float | None = None, write: bool = True,
                       quiet: bool = False) -> dict:
    """Audit ``artifacts/<model>/``: writes ``audit.json`` there and prints a summary; returns the dict."""
    from validation import artifacts as art

    artifact_dir = Path(artifact_dir)
    if not artifact_dir.is_dir():
        raise UserError(f"--artifacts {artifact_dir}: folder not found")
    manifest = Manifest.load(artifact_dir)
    stages = art.present_stages(artifact_dir, manifest)
    if not stages:
        raise UserError(f"--artifacts {artifact_dir}: no model.onnx, model.sim.onnx, saved_model/ or "
                        f"tfjs/model.json inside")
    io = art.stage_io_spec(manifest, "tfjs", stages["tfjs"], cfg) if "tfjs" in stages else None
    io_names = io.output_labels() if io else None
    result = static_audit(stages, cfg.reg_max, io_names)
    result["artifact_dir"] = artifact_dir.name
    result["model"] = cfg.name
    if tolerance is None:
        tolerance = float((cfg.toolkit.get("validation") or {}).get("raw_atol", 1e-4))
    if dynamic and "tfjs" in stages:
        from validation.api import reference_runner
        from validation.dataset import load_batch, resolve_images
        try:
            batch = load_batch(resolve_images(images, limit=limit), cfg)
        except UserError as exc:
            if images is not None:
                raise
            batch = None
            result["dynamic"] = {"status": f"skipped: {exc}"}
        if batch is not None:
            ref = reference_runner(cfg, manifest.weights_provenance())
            result["dynamic"] = run_dynamic_for(stages["tfjs"], io, ref, batch.tensor, cfg.reg_max, tolerance,
                                                result["findings"], backend)
            result["dynamic"]["image_files"] = [p.name for p in batch.images.paths]
            result["dynamic"]["weights_quantized"] = art.tfjs_quantization(stages["tfjs"])
    elif dynamic:
        result["dynamic"] = {"status": "skipped: no tfjs/model.json in the folder"}
    result["summary"] = summary_counts(result)
    if write:
        write_json(artifact_dir / "audit.json", result, indent=1)
    if not quiet:
        print_summary(result, str(artifact_dir))
    return result


def run_dynamic_for(model_json, io, ref, batch, reg_max, tolerance, findings, backend):
    from .dynamic import run_dynamic
    return run_dynamic(model_json, io, ref, batch, reg_max, tolerance, findings, backend)
