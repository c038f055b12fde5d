"""Bad checkpoints and configs give one clear line on stderr, exit code 2 and no traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from contracts.errors import UserError
from contracts.paths import PROJECT_ROOT
from nanodet_ref.checkpoint import check_and_load, extract_state_dict, load_weights, read_state_dict
from nanodet_ref.config import load_config
from nanodet_ref.model import build_model


def run_cli(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "commands", "reference", *args], capture_output=True, text=True,
                          cwd=cwd or PROJECT_ROOT, timeout=120)
    return proc.returncode, proc.stderr.strip().splitlines()


def assert_one_line_error(code, lines, *words):
    assert code == 2, lines
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1, lines
    assert not any("Traceback" in l for l in lines), lines
    for w in words:
        assert w in errors[0], errors[0]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    cfg = load_config("m-320")
    model = build_model(cfg)
    load_weights(model, cfg, seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "good.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    import cv2
    import numpy as np

    path = tmp_path_factory.mktemp("img") / "img.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 127, np.uint8))
    return path


def test_good_checkpoint_runs(good_checkpoint, image):
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(good_checkpoint), str(image))
    assert code == 0, lines


def test_truncated_checkpoint(good_checkpoint, image, tmp_path):
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good_checkpoint.read_bytes()[: good_checkpoint.stat().st_size // 2])
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(bad), str(image))
    assert_one_line_error(code, lines, "truncated.pth", "truncated or corrupt")


def test_not_a_checkpoint(image, tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("these are my notes, not weights\n")
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(bad), str(image))
    assert_one_line_error(code, lines, "notes.pth", "not a PyTorch checkpoint")


def test_random_bytes_are_not_a_checkpoint_and_torch_warns_nothing(image, tmp_path):
    """Random bytes that start like a protocol-4 pickle: torch.load warns about the protocol before it fails;
    the user sees one line, and it does not call the bytes pickled code."""
    import numpy as np

    bad = tmp_path / "random.pth"
    bad.write_bytes(b"\x80\x04" + np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(bad), str(image))
    assert_one_line_error(code, lines, "random.pth", "not a PyTorch checkpoint")
    assert len(lines) == 1, lines   # no torch warning before the error line
    assert "pickled code" not in lines[0]


@pytest.mark.parametrize("seed", range(20))
def test_any_random_bytes_are_not_a_checkpoint(tmp_path, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    bad = tmp_path / "noise.pth"
    bad.write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="noise.pth: not a PyTorch checkpoint"):
        read_state_dict(bad)


class Plain:
    """A class a pickle can name (module-level, so that pickle finds it)."""


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_a_pickled_class_is_still_refused(tmp_path, writer):
    import pickle
    import warnings

    path = tmp_path / "classy.pth"
    payload = {"state_dict": {"backbone.conv1.0.weight": Plain()}}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=int(writer[-1]))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match="classy.pth: refused: the file holds pickled code"):
            read_state_dict(path)
    assert not seen, [str(w.message) for w in seen]


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(image, tmp_path):
    marker = tmp_path / "pwned"
    evil = _RunsCode()
    evil.marker = marker
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"backbone.conv1.0.weight": evil}}, path)
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(path), str(image))
    assert_one_line_error(code, lines, "evil.pth", "refused")
    assert not marker.exists()


def test_wrong_class_count(image, tmp_path):
    cfg = load_config("m-320")
    raw = cfg.raw
    raw["model"]["arch"]["head"]["num_classes"] = 20
    raw["class_names"] = [f"c{i}" for i in range(20)]
    small_cfg = tmp_path / "voc.yml"
    small_cfg.write_text(yaml.safe_dump(raw))
    small = build_model(load_config(small_cfg))
    path = tmp_path / "voc.pth"
    torch.save({"state_dict": small.state_dict()}, path)
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(path), str(image))
    assert_one_line_error(code, lines, "voc.pth", "20 classes", "80 classes")


def test_unknown_backbone(image, tmp_path):
    raw = load_config("m-320").raw
    raw["model"]["arch"]["backbone"]["name"] = "ResNet"
    path = tmp_path / "resnet.yml"
    path.write_text(yaml.safe_dump(raw))
    code, lines = run_cli("detect", "--config", str(path), str(image))
    assert_one_line_error(code, lines, "resnet.yml", "unknown backbone 'ResNet'")


def test_unreadable_image(good_checkpoint, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8not really a jpeg")
    code, lines = run_cli("detect", "--model", "m-320", "--checkpoint", str(good_checkpoint), str(bad))
    assert_one_line_error(code, lines, "broken.jpg", "cannot be read")


def test_unknown_model_name():
    code, lines = run_cli("detect", "--model", "m-999", "x.jpg")
    assert_one_line_error(code, lines, "unknown MODEL 'm-999'")


def test_missing_and_misshaped_keys_are_listed(good_checkpoint):
    cfg = load_config("m-320")
    sd = read_state_dict(good_checkpoint)
    del sd["fpn.lateral_convs.0.conv.bias"]
    sd["fpn.lateral_convs.1.conv.weight"] = torch.zeros(96, 232, 3, 3)
    sd["extra.thing"] = torch.zeros(1)
    with pytest.raises(UserError) as err:
        check_and_load(build_model(cfg), sd, cfg, "x.pth")
    text = str(err.value)
    assert "1 missing key(s): fpn.lateral_convs.0.conv.bias" in text
    assert "1 unexpected key(s): extra.thing" in text
    assert "fpn.lateral_convs.1.conv.weight (96, 232, 3, 3) != (96, 232, 1, 1)" in text


def test_prefixes_ema_and_absent_gfl_reg(good_checkpoint):
    cfg = load_config("m-320")
    sd = read_state_dict(good_checkpoint)
    ema = {f"avg_model.{k}": v + 1 for k, v in sd.items() if not k.startswith("head.gfl_reg.")}
    plain = {f"model.{k}": v for k, v in sd.items()}
    picked = extract_state_dict({"state_dict": {**plain, **ema}, "epoch": 3}, "x.ckpt")
    assert set(picked) == {k for k in sd if not k.startswith("head.gfl_reg.")}
    assert torch.equal(picked["fpn.lateral_convs.0.conv.bias"], sd["fpn.lateral_convs.0.conv.bias"] + 1)
    model = build_model(cfg)
    check_and_load(model, picked, cfg, "x.ckpt")  # gfl_reg absent is allowed
    ddp = extract_state_dict({f"module.{k}": v for k, v in sd.items()}, "x.pth")
    assert set(ddp) == set(sd)


def test_missing_shared_checkpoint_falls_back_to_random(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NANODET_SHARED", str(tmp_path / "nowhere"))
    cfg = load_config("m-416")
    provenance = load_weights(build_model(cfg), cfg, seed=5)
    assert provenance["weights"] == "random (seed 5)"
    assert "SEEDED RANDOM WEIGHTS" in capsys.readouterr().err
