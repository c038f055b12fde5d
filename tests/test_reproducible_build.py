"""Identical inputs give identical bytes (``converters.reproducible``): two builds of m-416 have the same sha256
for model.onnx, model.sim.onnx and every file of saved_model/ and tfjs/ (the JS module included); their manifests
differ only in the ``run`` block, and validation.json keeps its run facts in its own ``run`` block."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.paths import PROJECT_ROOT

STAGE_OUTPUTS = ("model.onnx", "model.sim.onnx", "saved_model", "tfjs")


def output_hashes(folder: Path) -> dict[str, str]:
    from contracts.hashing import sha256_file
    out = {}
    for name in STAGE_OUTPUTS:
        path = folder / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out.update({p.relative_to(folder).as_posix(): sha256_file(p) for p in files})
    return out


def test_only_attribute_maps_are_sorted():
    from converters.reproducible import sorted_attrs
    graph = {"signature": {"outputs": {"b": {"name": "Identity_1:0"}, "a": {"name": "Identity:0"}}},
             "modelTopology": {"node": [{"name": "n", "op": "Conv2D", "input": ["y", "x"],
                                         "attr": {"strides": {"list": {}}, "T": {"type": "DT_FLOAT"},
                                                  "f": {"func": {"name": "g", "attr": {"z": 1, "a": 2}}}}}]}}
    out = sorted_attrs(graph)
    assert out == graph                                            # same content ...
    assert list(out["signature"]["outputs"]) == ["b", "a"]          # ... TFJS's output order untouched
    node = out["modelTopology"]["node"][0]
    assert list(node["attr"]) == ["T", "f", "strides"] and node["input"] == ["y", "x"]
    assert list(node["attr"]["f"]["func"]["attr"]) == ["a", "z"]


def test_fingerprint_uuid_follows_the_hashes():
    from tensorflow.core.protobuf import fingerprint_pb2

    from converters.reproducible import fingerprint_uuid
    a = fingerprint_pb2.FingerprintDef(saved_model_checksum=1, graph_def_program_hash=2, signature_def_hash=3,
                                       saved_object_graph_hash=4, checkpoint_hash=5, uuid="random one")
    b = fingerprint_pb2.FingerprintDef()
    b.CopyFrom(a)
    b.uuid = "random two"
    assert fingerprint_uuid(a) == fingerprint_uuid(b) and fingerprint_uuid(a).isdigit()
    b.checkpoint_hash = 6
    assert fingerprint_uuid(a) != fingerprint_uuid(b)


@pytest.mark.slow
def test_two_builds_of_m416_are_byte_identical(converted_m416, tmp_path):
    again = tmp_path / "m-416"
    r = subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--force",
                        "--no-validate", "--no-audit", "--out", str(again)], cwd=PROJECT_ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    first, second = output_hashes(converted_m416), output_hashes(again)
    assert {"saved_model/fingerprint.pb", "tfjs/model.json", "tfjs/nanodet.mjs"} <= set(first)
    assert first == second

    one, two = (json.loads((f / "manifest.json").read_text()) for f in (converted_m416, again))
    assert one["run"]["folder"] != two["run"]["folder"]
    assert {k: v for k, v in one.items() if k != "run"} == {k: v for k, v in two.items() if k != "run"}
    assert set(two["run"]["stages"]) == set(STAGE_OUTPUTS) - {"model.onnx", "model.sim.onnx"} | {"onnx", "onnx_sim"}


@pytest.mark.slow
def test_validation_json_keeps_run_facts_in_its_run_block(converted_m416):
    report = json.loads((converted_m416 / "validation.json").read_text())
    assert not {"created", "seconds"} & set(report)
    assert all(not {"seconds", "runner"} & set(stage) for stage in report["stages"].values())
    assert {"created", "seconds", "stages"} <= set(report["run"])
    assert report["run"]["stages"]["tfjs"]["seconds"] > 0
    assert report["artifact"] == "m-416" and set(report["stage_digests"]) == {"onnx", "onnx_sim", "saved_model",
                                                                              "tfjs"}
