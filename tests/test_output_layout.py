"""``--layout upstream``: upstream's export signature (input ``data``, one output ``output`` [1, N, C + 4 (reg_max+1)],
levels stride-ascending, each map row-major, sigmoid scores then raw logits per point) beside the default
per-level one.

The splitter (``contracts.signature.split_upstream`` / the io spec's views) inverts the packing exactly; the
PyTorch reference in that layout is upstream's ``_forward_onnx`` (recomputed here from the head's own modules) and
the per-level outputs concatenated, and on the real NanoDet-Plus weights it reproduces upstream's own export
(``output.npy`` goldens); the JS module splits the same way before the same decoding; a layout that cannot apply
is refused on one line; and a small conversion carries the layout through every stage (ONNX names and shape, the
TFJS signature, the manifest, the JS module) with the validation passing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from contracts.errors import UserError
from contracts.io_spec import IoSpec
from contracts.paths import PROJECT_ROOT, configs_dir
from contracts.signature import (UPSTREAM_LAYOUT, check_layout_applies, export_output_shapes, output_names,
                                 signature_io_spec, split_upstream)
from nanodet_ref.config import load_config

MODELS = ["m-416", "plus-m-416"]


def random_per_level(cfg, rng) -> dict[str, np.ndarray]:
    """Per-level outputs [1, HW, C] of the config's shapes, every value distinct."""
    shapes = export_output_shapes(cfg)
    return {n: rng.standard_normal(shapes[n]).astype(np.float32) for n in output_names(cfg.strides)}


def packed_like_upstream(per_level: dict, cfg) -> np.ndarray:
    """Upstream's packing written out independently of the toolkit's: per level cat(scores, logits) on channels,
    then the levels one after the other."""
    return np.concatenate([np.concatenate([per_level[f"cls_pred_stride_{s}"], per_level[f"dis_pred_stride_{s}"]],
                                          axis=2) for s in cfg.strides], axis=1)


@pytest.mark.parametrize("model", MODELS)
def test_the_splitter_round_trips(model):
    """Packing then splitting gives every per-level output back bit for bit, through the function and through the
    io spec's views (what every runner collects by), also from a batch of two; a wrong shape is refused."""
    cfg = load_config(model)
    rng = np.random.default_rng(0)
    images = [random_per_level(cfg, rng) for _ in range(2)]
    packed = np.concatenate([packed_like_upstream(p, cfg) for p in images], axis=0)
    assert list(packed.shape[1:]) == export_output_shapes(cfg, UPSTREAM_LAYOUT)["output"][1:]
    spec = IoSpec.from_dict(signature_io_spec(cfg, UPSTREAM_LAYOUT).to_dict())   # through its JSON form
    for got in (split_upstream(packed, cfg), spec.collect({"output": packed}, "test")):
        assert list(got) == output_names(cfg.strides)
        for name, arr in got.items():
            assert np.array_equal(arr, np.concatenate([p[name] for p in images])), name
    assert spec.input_name == "data" and spec.artifact_outputs() == ["output"]
    with pytest.raises(UserError, match=r"shape \[2, 3598, 111\]" if model == "plus-m-416" else "shape"):
        split_upstream(packed[:, :, :-1], cfg)
    with pytest.raises(UserError, match="too small"):
        spec.collect({"output": packed[:, :-1]}, "test")


@pytest.mark.parametrize("view, message", [
    ({"of": "output", "rows": [5, 5], "channels": [0, 80]}, r"view rows must be \[start, stop\] with 0 <= start < "
                                                            r"stop, got \[5, 5\]"),
    ({"of": "output", "rows": [0, 9], "channels": [0.5, 80]}, "view channels must be"),
    ({"rows": [0, 9], "channels": [0, 80]}, "view must be"),
])
def test_a_bad_view_in_an_io_spec_is_refused_on_one_line(view, message):
    spec = {"input": {"name": "data"}, "outputs": {"cls_pred_stride_8": {"name": "Identity:0", "view": view}}}
    with pytest.raises(UserError, match=message) as err:
        IoSpec.from_dict(spec, "spec.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("spec.json: output 'cls_pred_stride_8': view")


def upstream_forward_onnx(model, x: torch.Tensor) -> torch.Tensor:
    """Upstream's ``_forward_onnx`` (NanoDetHead and NanoDetPlusHead alike) recomputed from the reference's own
    modules: per level the conv stack, gfl_cls, split, sigmoid on the class channels, cat, flatten, then the
    levels concatenated and permuted to [N, points, channels]."""
    head = model.head
    outputs = []
    for feat, stack, gfl in zip(model.fpn(model.backbone(x)), head.cls_convs, head.gfl_cls):
        for conv in stack:
            feat = conv(feat)
        cls, reg = gfl(feat).split([head.num_classes, 4 * (head.reg_max + 1)], dim=1)
        outputs.append(torch.cat([cls.sigmoid(), reg], dim=1).flatten(start_dim=2))
    return torch.cat(outputs, dim=2).permute(0, 2, 1)


@pytest.mark.parametrize("model", MODELS)
def test_reference_in_upstream_layout_is_the_per_level_outputs_concatenated(model):
    """Same weights (the config's checkpoint; seeded random without the shared folder): the upstream-layout
    model's one output equals the per-level outputs concatenated bit for bit, and upstream's ``_forward_onnx``
    (sigmoid scores, raw logits) to float32 rounding."""
    from nanodet_ref.checkpoint import load_weights
    from nanodet_ref.model import build_model, run_model

    cfg = load_config(model)
    per_level, packed = build_model(cfg), build_model(cfg, UPSTREAM_LAYOUT)
    for m in (per_level, packed):
        load_weights(m, cfg, seed=3)
    assert packed.output_names == ["output"]
    x = np.random.default_rng(1).standard_normal((1, 3, *cfg.input_size[::-1])).astype(np.float32)
    (got,) = run_model(packed, x).values()
    assert np.array_equal(got, packed_like_upstream(run_model(per_level, x), cfg))
    with torch.no_grad():
        upstream = upstream_forward_onnx(per_level, torch.from_numpy(x)).numpy()
    assert got.shape == upstream.shape and np.abs(got - upstream).max() < 1e-6
    scores = got[..., :cfg.num_classes]
    assert scores.min() >= 0 and scores.max() <= 1   # probabilities, as upstream's export gives them


def test_validation_reference_in_upstream_layout_gives_the_per_level_outputs():
    """The validation's PyTorch runner built in the upstream layout (what it compares an upstream artifact with)
    runs the packed model and hands the comparators the same per-level outputs as the default runner."""
    from validation.runners.pytorch import TorchRunner

    cfg = load_config("plus-m-416")
    x = np.random.default_rng(2).standard_normal((1, 3, *cfg.input_size[::-1])).astype(np.float32)
    packed = TorchRunner.from_config(cfg, seed=5, layout=UPSTREAM_LAYOUT)
    assert packed.model.output_names == ["output"]
    want, got = TorchRunner.from_config(cfg, seed=5).run(x), packed.run(x)
    assert list(got) == list(want) and all(np.array_equal(got[n], want[n]) for n in want)


@pytest.mark.parametrize("model", ["plus-m-416", "plus-m-320"])
def test_upstream_layout_reproduces_upstream_export_goldens(shared, model):
    """On the real NanoDet-Plus checkpoint, the upstream-layout reference on upstream's own input tensor gives
    upstream's own export output (``output.npy``, made by upstream's code) within 1e-4."""
    from nanodet_ref.checkpoint import load_weights
    from nanodet_ref.model import build_model, run_model

    cfg = load_config(model)
    net = build_model(cfg, UPSTREAM_LAYOUT)
    load_weights(net, cfg)
    folders = sorted((shared / "reference" / "golden" / model).iterdir())
    assert folders
    for folder in folders:
        want = np.load(folder / "output.npy")
        got = run_model(net, np.load(folder / "input.npy"))["output"]
        assert got.shape == want.shape, folder.name
        assert np.abs(got - want).max() <= 1e-4, (folder.name, float(np.abs(got - want).max()))


def test_an_unknown_layout_is_refused_on_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--layout", "flat",
                           "--out", str(out), "--no-validate", "--no-audit"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --layout: unknown 'flat' (choose per-level or upstream)"
    assert not out.exists()


def test_the_artifact_folder_says_the_layout():
    """Both layouts coexist: the upstream one gets its own suffix, last; the default adds none."""
    from converters.options import ConvertOptions, artifact_name

    assert artifact_name("m-416", ConvertOptions()) == "m-416"
    assert artifact_name("m-416", ConvertOptions(layout="upstream")) == "m-416-upstream"
    assert artifact_name("m-416", ConvertOptions(layout="upstream", backend="onnx2tf")) == "m-416-onnx2tf-upstream"


def test_upstream_layout_is_refused_for_a_head_upstream_does_not_export_that_way():
    """Upstream's SimpleConvHead (NanoDet-Plus's training-only aux head) has no ``_forward_onnx``: no single
    sigmoid output exists to match. The per-level layout does not depend on the head."""
    cfg = load_config("plus-m-416")
    cfg.head = {**cfg.head, "name": "SimpleConvHead"}
    with pytest.raises(UserError) as err:
        check_layout_applies(cfg, UPSTREAM_LAYOUT)
    assert str(err.value) == (f"{cfg.path}: --layout upstream: head 'SimpleConvHead' has no upstream single-output "
                              "export (upstream exports one for GFLHead, NanoDetHead, NanoDetPlusHead)")
    assert check_layout_applies(cfg, "per-level") == "per-level"


# --------------------------------------------------------------------------------------- the JS module

def node_ready():
    from validation import js_module_check as check
    if shutil.which("node") is None or not (PROJECT_ROOT / "js" / "node_modules" / check.DECODER).is_dir():
        pytest.skip("node or js/node_modules missing (run `make js`)")


@pytest.mark.parametrize("model", ["plus-m-416", "plus-m-320"])
def test_js_module_reads_the_layout_and_decodes_upstreams_own_output(shared, tmp_path, model):
    """The module rendered for an upstream-layout io spec says ``layout: upstream`` and fetches the one output;
    its decode() of upstream's own export output (the goldens) equals the Python decoder on the split views."""
    from converters.js_module import module_config, write_js_module
    from nanodet_ref.decode import decode
    from validation import js_module_check as check

    node_ready()
    cfg = load_config(model)
    spec = signature_io_spec(cfg, UPSTREAM_LAYOUT)
    config = module_config(cfg, spec)
    assert config["layout"] == "upstream" and config["outputs"] == {"output": "output"}
    assert module_config(cfg, signature_io_spec(cfg))["layout"] == "per-level"
    (tmp_path / "model.json").write_text("{}")
    module = write_js_module(tmp_path, cfg, spec)
    items, refs = [], {}
    for folder in sorted((shared / "reference" / "golden" / model).iterdir()):
        packed = np.load(folder / "output.npy").astype(np.float32)
        packed.tofile(tmp_path / f"{folder.name}.f32")
        refs[folder.name] = decode({n: v[0] for n, v in split_upstream(packed, cfg).items()}, cfg)
        items.append({"id": folder.name, "outputs": {"output": str(tmp_path / f"{folder.name}.f32")}, "warp": None,
                      "width": None, "height": None})
    (tmp_path / "list.json").write_text(json.dumps(items))
    proc = subprocess.run(check.node_command() + ["decode", "--module", str(module), "--list",
                                                  str(tmp_path / "list.json"), "--out", str(tmp_path / "out.json")],
                          cwd=PROJECT_ROOT / "js", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((tmp_path / "out.json").read_text())["detections"]
    for name, ref in refs.items():
        assert len(ref) > 10, name
        cmp = check.compare_detections(ref, check.as_detections(got[name]))
        assert cmp["ok"] and cmp["score_max"] == 0.0 and cmp["box_max_px"] < 1e-3, (name, cmp)


# ------------------------------------------------------------------------------ a small conversion, end to end

SMALL = [192, 192]   # plus-m-416's net at 192 x 192: 4 levels (24, 12, 6, 3), a short conversion


@pytest.fixture(scope="module")
def small_upstream_conversion(tmp_path_factory, test_output):
    """``convert --layout upstream`` of plus-m-416 at 192 x 192 (its real checkpoint where the shared folder is
    there, else seeded random weights), validated on 3 packaged photos; returns the artifact folder."""
    from nanodet_ref.samples import sample_photos

    photos = tmp_path_factory.mktemp("photos")
    for p in sample_photos()[:3]:
        shutil.copy(p, photos / p.name)
    raw = yaml.safe_load((configs_dir() / "plus-m-416.yml").read_text())
    raw["data"]["val"]["input_size"] = SMALL
    config = tmp_path_factory.mktemp("config") / "plus-small.yml"
    config.write_text(yaml.safe_dump(raw))
    out = test_output / "artifacts" / "plus-small-upstream"
    proc = subprocess.run([sys.executable, "-m", "commands", "convert", "--config", str(config), "--layout",
                           "upstream", "--out", str(out), "--images", str(photos)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=1200)
    (test_output / "convert-plus-small-upstream.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_conversion_carries_the_layout_through_every_stage(small_upstream_conversion):
    import onnx

    out = small_upstream_conversion
    cfg = load_config("plus-m-416")
    n = sum((SMALL[0] // s) * (SMALL[1] // s) for s in cfg.strides)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "plus-small-upstream" and manifest["options"]["layout"] == "upstream"
    assert manifest["signature"]["layout"] == "upstream"
    assert manifest["signature"]["input"]["name"] == "data"
    assert manifest["signature"]["outputs"] == {"output": [1, n, 112]}
    for stage in ("model.onnx", "model.sim.onnx"):
        graph = onnx.load(str(out / stage)).graph
        assert [i.name for i in graph.input] == ["data"], stage
        assert [(o.name, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in graph.output] == \
            [("output", [1, n, 112])], stage
    model_json = json.loads((out / "tfjs" / "model.json").read_text())
    outputs = model_json["signature"]["outputs"]
    assert len(outputs) == 1 and [int(d["size"]) for d in next(iter(outputs.values()))["tensorShape"]["dim"]] == \
        [1, n, 112]
    for stage, spec in manifest["io_specs"].items():   # every stage read per level, as views of its one output
        views = IoSpec.from_dict(spec).outputs
        assert sorted(views) == sorted(output_names(cfg.strides)), stage
        assert len({v.name for v in views.values()}) == 1 and all(v.view.of == "output" for v in views.values())
    report = json.loads((out / "validation.json").read_text())
    assert report["pass"] is True
    for name in ("onnx", "onnx_sim", "saved_model", "tfjs"):
        stage = report["stages"][name]
        assert stage["pass"] is True and stage["max_abs_diff"] <= 1e-4, (name, stage.get("failures"))
        assert stage["matched_fraction"] == 1.0, name
    assert json.loads((out / "audit.json").read_text())["summary"]["unfixed"] == 0
    text = (out / "tfjs" / "nanodet.mjs").read_text()
    assert '"layout": "upstream"' in text


@pytest.mark.slow
def test_js_module_of_the_conversion_matches_the_python_decoder(small_upstream_conversion):
    """The shipped module runs the TFJS model, gets upstream's one output and decodes it (its own split) to the
    Python decoder's detections on the same output split by the same views."""
    from nanodet_ref.samples import sample_photos
    from validation import js_module_check as check

    node_ready()
    config = json.loads((small_upstream_conversion / "manifest.json").read_text())["inputs"]["config"]
    cfg = load_config(config)
    assert list(cfg.input_size) == SMALL
    module, model = check.module_paths(small_upstream_conversion)
    work = small_upstream_conversion.parent / "js-parity-upstream"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    summary, _ = check.decode_parity(cfg, module, model, sample_photos()[:3], work)
    assert summary["ok"] and summary["detections"] > 0, summary
    assert sorted(p.name.split(".")[-2] for p in work.glob("*.f32") if not p.name.startswith("in")) == \
        ["output"] * 3
