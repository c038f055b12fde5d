"""A model at another input size than its config's (``--input-size W,H``).

NanoDet is fully convolutional: the same weights run at any size the neck takes. The config is re-parsed with
``data.val.input_size`` replaced, so that every check the config's own size goes through (the PAN / GhostPAN
level rule, the TAN's position count, ...) refuses a size the same way, on one line; the preprocessing (letterbox
or stretch, ``keep_ratio``) and the feature maps (``config.feature_size``) follow from the new size as they do
from the config's. The resized config is named ``<name>-<W>x<H>`` (``m-416-320x320``): artifact folders, reports
and the JS module say the size.
"""
from __future__ import annotations

import copy
import dataclasses
import re

from contracts.errors import UserError

from .config import Config, parse_config


def parse_input_size(text, option: str = "--input-size") -> tuple[int, int] | None:
    """``"W,H"`` (or ``WxH``; one number: square) -> (w, h); None for None/empty. UserError naming ``option``."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, (list, tuple)):
        parts = [str(v) for v in text]
    else:
        parts = [p for p in re.split(r"[,x\s]+", str(text).strip().lower()) if p]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"{option} {text}: give the width and height in pixels, e.g. {option} 320,320")
    return int(parts[0]), int(parts[1])


def sized_name(name: str, size: tuple[int, int]) -> str:
    """The name of a model at another input size: ``m-416`` at (320, 320) is ``m-416-320x320``."""
    return f"{name}-{size[0]}x{size[1]}"


def with_input_size(cfg: Config, size: tuple[int, int] | None, option: str = "--input-size") -> Config:
    """``cfg`` at ``size`` (w, h): unchanged where ``size`` is None or the config's own; else re-parsed with
    ``data.val.input_size`` replaced, without the config's ``toolkit.validation.reference_ap`` (an AP measured at
    its own size), and named ``sized_name``. A size the model cannot take: the config's own one-line UserError,
    prefixed with the config and the option it came from."""
    if size is None or tuple(size) == tuple(cfg.input_size):
        return cfg
    w, h = int(size[0]), int(size[1])
    raw = copy.deepcopy(cfg.raw)
    raw["data"]["val"]["input_size"] = [w, h]
    validation = (raw.get("toolkit") or {}).get("validation")
    if isinstance(validation, dict):
        validation.pop("reference_ap", None)   # measured at the config's own size: it says nothing at another
    where = f"{cfg.path or cfg.name} with {option} {w},{h}"
    parsed = parse_config(raw, name=where)   # its errors name ``where``: the config and the size asked for
    return dataclasses.replace(parsed, name=sized_name(cfg.name, (w, h)), path=cfg.path)
