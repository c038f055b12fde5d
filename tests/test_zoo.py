"""The zoo command on a folder of two upstream configs: NanoDet-g (builds; ONNX stages only, 2 images, to stay
fast) and the ConvNeXt one (an expected refusal). One table on stdout, one progress line per config, zoo.json and
zoo.md in the output folder, each config in its own artifact folder; exit 0 since both rows are as they should
be. The oracle comparator catches a kernel that differs from the oracle."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT

CONFIGS = ("nanodet-g.yml", "nanodet-plus_convnext-nano_640.yml")


@pytest.fixture(scope="module")
def zoo_run(shared, tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    for name in CONFIGS:
        shutil.copy(shared / "reference" / "upstream-configs" / name, folder / name)
    out = tmp_path_factory.mktemp("zoo")
    proc = subprocess.run([sys.executable, "-m", "commands", "zoo", "--configs", str(folder), "--out", str(out),
                           "--until", "onnx_sim", "--limit", "2"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=900)
    return proc, out


def test_zoo_table_rows_and_json(zoo_run):
    proc, out = zoo_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 2 and "nanodet-g.yml" in progress[0] and " PASS " in progress[0]
    assert "EXPECTED REFUSAL" in progress[1]
    table = proc.stdout.splitlines()
    assert table[0].split()[:5] == ["config", "family", "backbone", "/", "neck"] and len(table) == 4
    summary = json.loads((out / "zoo.json").read_text())
    assert summary["verdict"] == "PASS" and summary["limit"] == 2
    g, convnext = summary["rows"]
    assert g["config"] == "nanodet-g.yml" and g["family"] == "legacy" and g["builds"] == "yes"
    assert g["weights"] == "random (seed 0)"   # the toolkit has no NanoDet-g checkpoint
    assert g["stages"] == {"onnx": "PASS", "onnx_sim": "PASS", "saved_model": "-", "tfjs": "-"}
    assert g["max_abs_diff"] <= 1e-4 and g["matched"] == 1.0 and g["result"] == "PASS"
    assert g["oracle"]["pass"] and g["oracle"]["convs"] == 34 and g["oracle"]["resample_filters_left_out"] == 2
    assert (out / "nanodet-g" / "model.sim.onnx").is_file() and (out / "logs" / "nanodet-g.log").is_file()
    assert convnext["result"] == "EXPECTED REFUSAL" and "TIMMWrapper" in convnext["builds"]
    assert "timm" in convnext["expected_refusal"] and convnext["stages"]["onnx"] == "-"
    md = (out / "zoo.md").read_text()
    assert "| nanodet-g.yml | legacy |" in md and "| ConvNeXt backbone (TIMMWrapper) |" in md


def test_an_unexpected_refusal_fails_the_zoo(shared, tmp_path):
    """A config the toolkit refuses that is no expected refusal: a row, and exit 1 naming it."""
    import yaml

    raw = yaml.safe_load((shared / "reference" / "upstream-configs" / "nanodet-m.yml").read_text())
    raw["model"]["arch"]["backbone"]["name"] = "NoSuchNet"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "odd.yml").write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "commands", "zoo", "--configs", str(tmp_path / "configs"),
                           "--out", str(tmp_path / "out")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: 1 of 1 configs failed or were refused: odd.yml"
    row = json.loads((tmp_path / "out" / "zoo.json").read_text())["rows"][0]
    assert row["result"] == "REFUSED" and "NoSuchNet" in row["builds"]


def test_the_oracle_check_catches_a_kernel_that_differs(zoo_run, shared, tmp_path):
    """The same graph against the NanoDet-g oracle with one kernel's output channels changed: FAIL, naming both."""
    from validation.zoo.oracle import check_oracle

    _, out = zoo_run
    oracle = json.loads((shared / "reference" / "topology" / "nanodet-g.json").read_text())
    oracle["convs"][0]["out"] += 1
    changed = tmp_path / "nanodet-g.json"
    changed.write_text(json.dumps(oracle))
    result = check_oracle(out / "nanodet-g" / "model.sim.onnx", changed)
    assert not result["pass"]
    assert result["missing"] == ["1x 33/3 3x3 g1 s2 LeakyReLU"] and result["extra"] == ["1x 32/3 3x3 g1 s2 LeakyReLU"]


def test_no_shared_configs_is_one_line(tmp_path):
    import os

    proc = subprocess.run([sys.executable, "-m", "commands", "zoo", "--out", str(tmp_path / "out")], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NANODET_SHARED": str(tmp_path / "absent")})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: the shared upstream configs (<shared>/reference/upstream-configs) are "
                                   "absent: set NANODET_SHARED to the shared folder or give --configs DIR")
