"""Which neck and head class each upstream ``model.arch.fpn.name`` / ``head.name`` builds.

``model.NanoDet`` is backbone -> fpn -> head whatever the family; these lookups make it build NanoDet-Plus
(GhostPAN + NanoDetPlusHead, 4 levels with the extra stride-64 one) from upstream's YAML as well as legacy
NanoDet (PAN + NanoDetHead). Every head gives the toolkit's per-level outputs (see ``nanodet_ref.model``).
"""
from __future__ import annotations

from torch import nn

from contracts.errors import UserError

from .ghost_pan import build_ghost_pan
from .head import build_head as build_legacy_head
from .pan import build_fpn as build_pan
from .plus_head import build_plus_head
from .tan import build_tan

FPN_BUILDERS = {"PAN": build_pan, "GhostPAN": build_ghost_pan, "TAN": build_tan}
HEAD_BUILDERS = {"NanoDetHead": build_legacy_head, "NanoDetPlusHead": build_plus_head}


def build_fpn(cfg: dict) -> nn.Module:
    """The neck ``model.arch.fpn`` names."""
    if cfg.get("name") not in FPN_BUILDERS:
        raise UserError(f"unknown fpn '{cfg.get('name')}' (supported: {', '.join(FPN_BUILDERS)})")
    return FPN_BUILDERS[cfg["name"]](cfg)


def build_head(cfg: dict) -> nn.Module:
    """The head ``model.arch.head`` names."""
    if cfg.get("name") not in HEAD_BUILDERS:
        raise UserError(f"unknown head '{cfg.get('name')}' (supported: {', '.join(HEAD_BUILDERS)})")
    return HEAD_BUILDERS[cfg["name"]](cfg)
