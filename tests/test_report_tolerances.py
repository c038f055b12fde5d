"""report.md states the tolerances (atol and rtol, each output's tolerance) and the unmatched detections (near-ties
by reason, unexplained ones with an example); its tables keep their columns although criteria say ``|diff|``."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from nanodet_ref.config import load_config
from validation.comparators import decode_batch
from validation.evaluate import judge_stage, tolerances
from validation.report import console_table, markdown_report


def outputs(cfg, objects) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for s, (h, w) in zip(cfg.strides, cfg.feature_sizes()):
        out[f"cls_pred_stride_{s}"] = rng.uniform(0.0, 0.01, (1, h * w, cfg.num_classes)).astype(np.float32)
        out[f"dis_pred_stride_{s}"] = rng.normal(0, 0.5, (1, h * w, 4 * (cfg.reg_max + 1))).astype(np.float32)
    for stride, point, label, score in objects:
        out[f"cls_pred_stride_{stride}"][0, point, label] = score
    return out


def test_report_states_tolerances_and_detection_differences():
    cfg = load_config("m-416")
    tol = tolerances(cfg)
    ref = outputs(cfg, [(16, 300, 3, 0.9), (32, 40, 7, 0.0500005)])
    near_tie = outputs(cfg, [(16, 300, 3, 0.9), (32, 40, 7, 0.0499995)])
    moved = outputs(cfg, [(16, 300, 3, 0.9), (32, 40, 7, 0.0500005)])
    moved["dis_pred_stride_16"][0, 300, :4] += 3.0
    batch = SimpleNamespace(warps=[np.eye(3)], image_hws=[(416, 416)])
    stages = {"pytorch": {"pass": True, "outputs": {}, "criteria": "reference"}}
    for name, got in (("onnx", near_tie), ("tfjs", moved)):
        stages[name] = judge_stage(cfg, tol, batch, ref, decode_batch(ref, cfg), got, None, None, None)[0]
    report = {"model": "m-416", "weights": "w", "images": 1, "tolerances": tol, "stages": stages,
              "pass": False}
    md = markdown_report(report, [])
    assert '"raw_atol": 0.0001, "raw_rtol": 0.0001' in md
    table = [line for line in md.splitlines() if line.startswith("| onnx |") or line.startswith("| stage |")]
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in table}) == 1  # escaped pipes keep the columns
    assert "| onnx | PASS |" in md and "| 1/0 |" in md and "| tfjs | FAIL |" in md
    assert "- **onnx**: 1 near-ties (1 score_threshold), 0 unexplained" in md
    assert "- **tfjs**: 0 near-ties (none), 2 unexplained" in md and '"only_in": "pytorch"' in md
    assert re.search(r"\| dis_pred_stride_16 \| 0 / 0\.000\d+ PASSED \| 3\.0000 / 0\.000\d+ FAILED \|", md)
    assert "1/0" in console_table(report)


def test_report_says_when_the_graph_was_equalized_for_uint8():
    """A uint8 / auto artifact's graph is not the float32 one: report.md says so with what the rewrite did (from
    the manifest's onnx_sim patch report); a float32 artifact's report has no such line."""
    from contracts.manifest import Manifest
    from validation.api import equalization_facts

    ratio = {"depthwise kernels": {"before": 145.659, "after": 9.104}, "bias |max|": {"before": 3.6, "after": 4.0}}
    patch = {"pairs": 47, "channels_rescaled": 4366, "channels": 5422, "rounds": 6, "largest_range_ratio": ratio}
    manifest = Manifest({"stages": {"onnx_sim": {"completed": "x", "patch_reports": {
        "equalize_channel_ranges": patch, "int64_clamp": {"count": 0}}}}})
    facts = equalization_facts(manifest)
    assert facts == {"pairs": 47, "channels_rescaled": 4366, "channels": 5422, "largest_range_ratio": ratio}
    assert equalization_facts(Manifest({"stages": {"onnx_sim": {"completed": "x", "patch_reports": {}}}})) is None
    report = {"model": "m-416", "weights": "w", "images": 1, "tolerances": {}, "pass": True,
              "stages": {"pytorch": {"pass": True, "outputs": {}, "criteria": "reference"}}}
    assert "equalized" not in markdown_report(report, [])
    line = [x for x in markdown_report({**report, "equalization": facts}, []).splitlines() if "equalized" in x]
    assert line == ["- graph: channel ranges equalized before uint8 (patches/equalize_channel_ranges.py: 47 Conv "
                    "pairs, 4366 of 5422 channels rescaled by powers of two, exact in float32; largest "
                    "channel-range ratio depthwise kernels 145.659x -> 9.104x)"]
