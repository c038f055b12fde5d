"""Custom class sets: AP is measured over the model's classes that are categories of the annotation file, matched
by name (case-insensitive, spaces and underscores alike); where none is, there is no AP and one note says why,
never a number over categories the model never learnt."""
from __future__ import annotations

import json

import pytest
import yaml

from contracts.paths import configs_dir
from nanodet_ref.decode import Detection
from nanodet_ref.config import parse_config

ANNOTATIONS = ("data", "coco-val2017-40", "annotations", "instances_val2017_40.json")


@pytest.fixture(scope="module")
def annotations(shared):
    return shared.joinpath(*ANNOTATIONS)


def ground_truth_detections(path, category_names: dict[str, int]) -> dict[str, list]:
    """The file's own boxes of the named categories as detections (score 1), labelled by ``category_names``
    ({category name: model label}): a perfect detector of those classes."""
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {img["id"]: img["file_name"] for img in data["images"]}
    dets = {name: [] for name in files.values()}
    for a in data["annotations"]:
        label = category_names.get(names[a["category_id"]])
        if label is not None and not a.get("iscrowd"):
            x, y, w, h = a["bbox"]
            dets[files[a["image_id"]]].append(Detection(label, 1.0, (x, y, x + w, y + h)))
    return dets


def test_a_class_no_category_has_gets_no_ap_and_a_note(annotations):
    from validation.coco_ap import CocoAnnotations

    coco = CocoAnnotations(annotations, ["QR"])
    assert coco.classes.none
    result = coco.evaluate({"000000005001.jpg": [Detection(0, 0.9, (10.0, 10.0, 200.0, 200.0))]})
    assert result["ap"] is None and result["ap50"] is None
    assert result["note"] == ("instances_val2017_40.json: none of the model's 1 class name(s) (QR) is a category "
                              "of this file: no AP (the stages are still compared with PyTorch)")


def test_names_match_across_spelling_and_ap_is_over_the_matched_classes(annotations):
    """'person' and 'traffic_light' are COCO's 'person' and 'traffic light'; 'qr' is none. A detector that finds
    every person and traffic light exactly gets AP 1 over those two classes (over all 80 it would be far less),
    and the unmatched class is named."""
    from validation.coco_ap import CocoAnnotations

    coco = CocoAnnotations(annotations, ["person", "Traffic_Light", "qr"])
    assert coco.classes.category_of == {0: 1, 1: 10}
    assert coco.classes.matched == {"person": "person", "Traffic_Light": "traffic light"}
    assert coco.classes.unmatched == ["qr"]
    assert coco.classes.note(annotations) == (
        "instances_val2017_40.json: AP over the 2 of the model's 3 classes that are categories of this file "
        "(person, Traffic_Light); not categories here: qr")
    dets = ground_truth_detections(annotations, {"person": 0, "traffic light": 1})
    dets["000000005001.jpg"].append(Detection(2, 0.99, (0.0, 0.0, 50.0, 50.0)))   # a 'qr': not in the AP
    assert coco.evaluate(dets)["ap"] == pytest.approx(1.0)


def test_the_coco_model_still_maps_every_class(annotations):
    from validation.coco_ap import CocoAnnotations

    names = yaml.safe_load((configs_dir() / "m-416.yml").read_text())["class_names"]
    coco = CocoAnnotations(annotations, names)
    assert not coco.classes.unmatched and coco.classes.category_of == dict(enumerate(coco.category_ids))


def test_validating_a_qr_model_on_coco_reports_no_ap(shared, tmp_path):
    """A 1-class model named 'QR' (random weights) validated on the shared COCO images: the PyTorch stage has no
    AP (it used to report 0.00002), the report carries the note and the class match."""
    from validation.api import run_validation
    from validation.runners.pytorch import TorchRunner

    raw = yaml.safe_load((configs_dir() / "m-320.yml").read_text())
    raw["model"]["arch"]["head"]["num_classes"] = 1
    raw["class_names"] = ["QR"]
    raw["toolkit"]["weights"] = None
    cfg = parse_config(raw, name="qr-320")
    report = run_validation(tmp_path, cfg, TorchRunner.from_config(cfg, seed=0), {}, {}, limit=2, write=False,
                            log=lambda msg: None)
    assert report["stages"]["pytorch"]["ap"] is None and report["stages"]["pytorch"]["ap50"] is None
    assert report["stages"]["pytorch"]["reference_detections"] > 0
    assert report["classes"] == {"by_name": True, "matched": {}, "unmatched": ["QR"]}
    assert any("none of the model's 1 class name(s) (QR)" in w for w in report["warnings"])
