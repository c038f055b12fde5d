"""Which class each upstream ``model.arch.backbone.name`` builds: the one list of supported backbones.

A table of (module of ``nanodet_ref``, class name) rather than of classes, so that the config parser
(``config.BACKBONES`` is derived from it) stays free of torch; ``backbones.build_backbone`` imports the class
when a model is built. Necks and heads: ``arch_registry``.
"""
from __future__ import annotations

import importlib

BACKBONE_BUILDERS = {  # model.arch.backbone.name -> (module in nanodet_ref, class taking the config's keys)
    "ShuffleNetV2": ("backbones", "ShuffleNetV2"),
    "CustomCspNet": ("backbones", "CustomCspNet"),
    "EfficientNetLite": ("efficientnet_lite", "EfficientNetLite"),
    "RepVGG": ("repvgg", "RepVGG"),
}

# Backbones whose upstream class downloads ImageNet weights when built with ``pretrain`` true (its default there).
UPSTREAM_PRETRAIN_DEFAULT = {"ShuffleNetV2": True, "EfficientNetLite": True}


def backbone_class(name: str) -> type:
    """The class building backbone ``name`` (a key of ``BACKBONE_BUILDERS``)."""
    module, cls = BACKBONE_BUILDERS[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def pretrain_note(backbone: dict) -> str | None:
    """One line for the manifest where upstream would download ImageNet weights for this backbone (``pretrain``
    true, or left at upstream's default true): the toolkit never downloads anything. None where it would not."""
    name = backbone.get("name")
    if name not in UPSTREAM_PRETRAIN_DEFAULT or not backbone.get("pretrain", UPSTREAM_PRETRAIN_DEFAULT[name]):
        return None
    return (f"model.arch.backbone.pretrain is true (upstream downloads ImageNet weights for {name}); "
            f"nothing was downloaded: these are the seeded random weights")
