"""The zoo's expected refusals: upstream configs the toolkit is meant to refuse, each with why.

A config that matches a row here and is refused with a one-line error counts as an expected outcome in the
zoo's verdict; any other refusal fails the zoo. (Should one of them build one day, its row is simply judged
like every other.)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExpectedRefusal:
    what: str            # the row's name in the docs' table
    file: str | None     # a config file name it applies to, or
    key: str | None      # a dotted config key whose value ...
    value: str | None    # ... is this
    reason: str

    def applies(self, path: Path, raw) -> bool:
        if self.file is not None:
            return Path(path).name == self.file
        return lookup(raw, self.key) == self.value


EXPECTED_REFUSALS = (
    ExpectedRefusal("ConvNeXt backbone (TIMMWrapper)", None, "model.arch.backbone.name", "TIMMWrapper",
                    "timm builds it, and timm needs torchvision, which has no CPU build for the pinned torch"),
    ExpectedRefusal("custom-dataset template", "nanodet_custom_xml_dataset.yml", None, None,
                    "a template: head.num_classes 80 with 5 placeholder class_names (NAME1, ...): the user fills "
                    "in both"),
)


def lookup(raw, dotted: str):
    """``raw['model']['arch'][...]`` along a dotted key; None where any part is absent."""
    node = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def expected_refusal(path: Path, raw) -> ExpectedRefusal | None:
    """The row of ``EXPECTED_REFUSALS`` that covers this config, if any."""
    return next((e for e in EXPECTED_REFUSALS if e.applies(path, raw)), None)
