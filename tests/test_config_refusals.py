"""Upstream configs the toolkit refuses on purpose, through ``convert``: one line naming the file and the config
keys, exit 2 (bad input), nothing written. ConvNeXt (backbone TIMMWrapper) needs timm and torchvision, which the
toolkit does not install; upstream's custom-dataset file is a template (80 classes, 5 placeholder names)."""
from __future__ import annotations

import pytest
import yaml

from commands.__main__ import main
from contracts.paths import shared_path

UPSTREAM = ("reference", "upstream-configs")


def _convert(capsys, config, out) -> tuple[int, list[str]]:
    code = main(["convert", "--config", str(config), "--out", str(out)])
    return code, capsys.readouterr().err.strip().splitlines()


def _config(path, backbone: dict, class_names: list[str], num_classes: int):
    raw = {"model": {"arch": {"backbone": backbone,
                              "fpn": {"name": "PAN", "in_channels": [116, 232, 464], "out_channels": 96},
                              "head": {"name": "NanoDetHead", "num_classes": num_classes, "input_channel": 96}}},
           "data": {"val": {"input_size": [320, 320], "pipeline": {"normalize": [[0, 0, 0], [1, 1, 1]]}}},
           "class_names": class_names}
    path.write_text(yaml.safe_dump(raw))
    return path


SHUFFLENET = {"name": "ShuffleNetV2", "model_size": "1.0x", "out_stages": [2, 3, 4]}
TIMM = {"name": "TIMMWrapper", "model_name": "convnext_nano", "features_only": True, "pretrained": True,
        "out_indices": [1, 2, 3]}


def _assert_refusal(code, err, config, out, *words):
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"error: {config}: "), err
    for word in words:
        assert word in err[0], (word, err[0])
    assert not out.exists()


def test_timm_backbone_is_refused_naming_what_is_missing(tmp_path, capsys):
    config = _config(tmp_path / "convnext.yml", TIMM, ["a", "b"], 2)
    code, err = _convert(capsys, config, tmp_path / "out")
    _assert_refusal(code, err, config, tmp_path / "out", "model.arch.backbone.name 'TIMMWrapper'", "timm",
                    "torchvision", "does not install")


def test_class_names_must_match_the_class_count(tmp_path, capsys):
    config = _config(tmp_path / "template.yml", SHUFFLENET, ["NAME1", "NAME2", "NAME3", "NAME4", "..."], 80)
    code, err = _convert(capsys, config, tmp_path / "out")
    _assert_refusal(code, err, config, tmp_path / "out", "class_names has 5 names",
                    "model.arch.head.num_classes is 80")


@pytest.mark.parametrize("name, words", [
    ("nanodet-plus_convnext-nano_640.yml", ("model.arch.backbone.name 'TIMMWrapper'", "timm", "torchvision")),
    ("nanodet_custom_xml_dataset.yml", ("class_names has 5 names", "model.arch.head.num_classes is 80")),
])
def test_upstream_files_are_refused_in_one_line(tmp_path, capsys, name, words):
    config = shared_path(*UPSTREAM, name)
    if config is None:
        pytest.skip(f"shared folder absent (upstream's {name})")
    code, err = _convert(capsys, config, tmp_path / "out")
    _assert_refusal(code, err, config, tmp_path / "out", *words)
