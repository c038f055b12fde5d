"""Load a NanoDet config written in the upstream nanodet YAML schema.

Upstream keys read: ``model.arch.backbone / fpn / head``, ``data.val.input_size`` ([w, h]),
``data.val.keep_ratio``, ``data.val.pipeline.normalize`` ([mean, std], BGR order), ``class_names``.
The toolkit's own settings live in a separate top-level ``toolkit:`` section that upstream ignores
(weights location and sha256, export and validation options); a plain upstream config works without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contracts.errors import UserError
from contracts.paths import configs_dir, shared_dir

from .backbone_table import BACKBONE_BUILDERS

BACKBONES = tuple(BACKBONE_BUILDERS)
FPNS = ("PAN", "GhostPAN", "TAN")
# Backbones upstream ships that the toolkit refuses on purpose, and why (one line each).
REFUSED_BACKBONES = {
    "TIMMWrapper": "a timm model (ConvNeXt in upstream's configs) needs timm (and torchvision), which this toolkit "
                   "does not install",
}

DEFAULT_TOOLKIT: dict[str, Any] = {
    "weights": None,  # {"file": path relative to the shared folder or absolute, "sha256": hex}
    "export": {"opset": 10},
    "decode": {"score_threshold": 0.05, "nms_iou": 0.6, "max_detections": 100},  # + the head's nms_pre below
    "validation": {},
}

# What each head's post-processing (upstream's get_bboxes) does its own way; the one place the decoder learns it.
# prior_offset: point (col, row) of a stride-s map has its centre at ((col + offset) s, (row + offset) s).
# nms_pre: the default per-level cut (best points by max class score) before NMS; None: every point goes on.
HEAD_DECODING = {
    "NanoDetHead": {"prior_offset": 0.5, "nms_pre": 1000},      # legacy v0.x (GFL priors, top 1000 per level)
    "NanoDetPlusHead": {"prior_offset": 0.0, "nms_pre": None},  # NanoDet-Plus: x * stride, no per-level cut
}
HEADS = tuple(HEAD_DECODING)


@dataclass
class Config:
    """A parsed config: the raw upstream dict plus the derived values every stage needs."""

    name: str
    path: Path | None
    raw: dict
    backbone: dict
    fpn: dict
    head: dict
    input_size: tuple[int, int]  # (w, h)
    keep_ratio: bool
    mean: tuple[float, float, float]  # BGR
    std: tuple[float, float, float]  # BGR
    class_names: list[str]
    toolkit: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.head["num_classes"])

    @property
    def strides(self) -> list[int]:
        return [int(s) for s in self.head.get("strides", [8, 16, 32])]

    @property
    def reg_max(self) -> int:
        return int(self.head.get("reg_max", 7))

    @property
    def decode(self) -> dict:
        return self.toolkit["decode"]

    @property
    def prior_offset(self) -> float:
        """Where a point's centre sits in its cell, in strides: 0.5 (legacy heads) or 0 (NanoDet-Plus)."""
        return float(HEAD_DECODING[self.head["name"]]["prior_offset"])

    def feature_sizes(self) -> list[tuple[int, int]]:
        """(h, w) of each level's feature map: ceil(size / stride), as the backbone computes them (every
        stride-2 conv and max pool pads by (k - 1) / 2) and as upstream's heads compute their priors."""
        w, h = self.input_size
        return [(feature_size(h, s), feature_size(w, s)) for s in self.strides]


def feature_size(size: int, stride: int) -> int:
    """ceil(size / stride) in integers: the side of a feature map at ``stride`` for an input side ``size``."""
    return -(-size // stride)


def pan_takes(size: int, strides) -> bool:
    """Whether the PAN neck can take an input side ``size``: it adds each level's x2-upsampled map to the next
    finer one (and x0.5-downsampled maps the other way), so each level's side must be exactly twice the next
    coarser one's (upstream resamples with ``scale_factor``, not to the finer map's size)."""
    sides = [feature_size(size, s) for s in strides]
    return all(fine == 2 * coarse for fine, coarse in zip(sides, sides[1:]))


def pan_sizes_text(strides) -> str:
    """The input sides the PAN takes, in words: residues modulo the coarsest stride (the pattern repeats with
    that period when every stride is twice the one before)."""
    period = max(strides)
    ok = [r for r in range(period) if pan_takes(period + r, strides)]
    runs: list[list[int]] = []
    for r in ok:
        if runs and runs[-1][-1] == r - 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    words = []
    for run in runs:
        if run == [0]:
            words.append(f"multiples of {period}")
        elif len(run) == 1:
            words.append(f"{period}k+{run[0]}")
        else:
            words.append(f"{period}k+{run[0]} to {period}k+{run[-1]}")
    return " or ".join(words)


def nearest_pan_sizes(size: int, strides) -> list[int]:
    """The closest sides below and above ``size`` that the PAN takes."""
    below = next((n for n in range(size - 1, 0, -1) if pan_takes(n, strides)), None)
    above = next(n for n in range(size + 1, size + 2 * max(strides) + 1) if pan_takes(n, strides))
    return [n for n in (below, above) if n is not None]


def check_input_size(size: tuple[int, int], strides, fpn: dict, where) -> None:
    """UserError, on one line, where the neck cannot take ``data.val.input_size``; says which sizes work."""
    name = fpn.get("name")
    levels = fpn.get("in_channels")
    extra = fpn.get("num_extra_level", 0) if name == "GhostPAN" else 0  # GhostPAN's levels beyond its inputs
    extra = extra if isinstance(extra, int) and extra > 0 else 0
    if isinstance(levels, (list, tuple)) and len(levels) + extra != len(strides):
        raise UserError(f"{where}: model.arch.head.strides {list(strides)} has {len(strides)} levels but "
                        f"model.arch.fpn.in_channels has {len(levels)}"
                        f"{f' plus {extra} extra' if extra else ''}: one stride per feature map")
    if any(fine * 2 != coarse for fine, coarse in zip(strides, strides[1:])):
        raise UserError(f"{where}: model.arch.head.strides {list(strides)}: the {name} neck resamples by 2 "
                        f"between levels, so each stride must be twice the one before (e.g. [8, 16, 32])")
    strides = list(strides)[:len(strides) - extra]  # extra levels come from stride-2 convs, which take any size
    bad = [(axis, n) for axis, n in zip(("width", "height"), size) if not pan_takes(n, strides)]
    if not bad:
        return
    stride_text = "/".join(str(s) for s in strides)
    gives = " and ".join(f"{axis} {n} gives {'/'.join(str(feature_size(n, s)) for s in strides)}"
                         for axis, n in bad)
    nearest = "; ".join(f"{axis} {' or '.join(str(v) for v in nearest_pan_sizes(n, strides))}" for axis, n in bad)
    raise UserError(f"{where}: data.val.input_size {list(size)} does not fit the {name} neck: its feature maps "
                    f"(ceil(size / stride) at strides {stride_text}) must each be twice the next coarser one, but "
                    f"{gives}; sizes that work: {pan_sizes_text(strides)} (nearest: {nearest})")


def check_tan_positions(size: tuple[int, int], strides, fpn: dict, where) -> None:
    """UserError, on one line, where the TAN neck's position embedding cannot be added: it holds
    feature_hw[0] * feature_hw[1] positions and upstream adds it to the middle level's flattened map without
    interpolating, so that map's h * w must be exactly that many (upstream fails on any other size)."""
    if fpn.get("name") != "TAN":
        return
    hw = fpn.get("feature_hw")
    if not (isinstance(hw, (list, tuple)) and len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)):
        raise UserError(f"{where}: model.arch.fpn.feature_hw must be [height, width] of the TAN's middle "
                        f"feature map, got {hw!r}")
    stride = list(strides)[1]
    h, w = feature_size(size[1], stride), feature_size(size[0], stride)
    if h * w != hw[0] * hw[1]:
        raise UserError(f"{where}: data.val.input_size {list(size)} gives the TAN neck a {h}x{w} middle feature map "
                        f"(stride {stride}) but model.arch.fpn.feature_hw {list(hw)} holds {hw[0] * hw[1]} position "
                        f"embeddings, which upstream adds without interpolation: use input_size "
                        f"[{hw[1] * stride}, {hw[0] * stride}] or retrain with another feature_hw")


def _merge(defaults: dict, given: dict | None) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in defaults.items()}
    for k, v in (given or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_config_path(name_or_path: str | Path) -> Path:
    """``m-416`` names ``configs/m-416.yml``; anything else is a path."""
    text = str(name_or_path)
    candidate = configs_dir() / f"{text}.yml"
    if "/" not in text and not text.endswith((".yml", ".yaml")):
        if candidate.is_file():
            return candidate
        known = sorted(p.stem for p in configs_dir().glob("*.yml"))
        raise UserError(f"unknown MODEL '{text}': known models are {', '.join(known)} "
                        f"(or give CONFIG=path/to/nanodet.yml)")
    path = Path(text)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    return path


def load_config(name_or_path: str | Path) -> Config:
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read config ({exc.__class__.__name__})") from None
    return parse_config(raw, path=path, name=path.stem)


def _need(d: Any, key: str, where: str, path) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise UserError(f"{path}: config has no '{where}{key}'")
    return d[key]


def parse_config(raw: Any, path: Path | None = None, name: str = "model") -> Config:
    where = path or name
    if not isinstance(raw, dict):
        raise UserError(f"{where}: config is not a YAML mapping")
    arch = _need(_need(raw, "model", "", where), "arch", "model.", where)
    backbone = dict(_need(arch, "backbone", "model.arch.", where))
    fpn = dict(_need(arch, "fpn", "model.arch.", where))
    head = dict(_need(arch, "head", "model.arch.", where))
    if backbone.get("name") in REFUSED_BACKBONES:
        raise UserError(f"{where}: model.arch.backbone.name '{backbone['name']}': "
                        f"{REFUSED_BACKBONES[backbone['name']]}")
    for part, known, key in ((backbone, BACKBONES, "backbone"), (fpn, FPNS, "fpn"), (head, HEADS, "head")):
        if part.get("name") not in known:
            raise UserError(f"{where}: unknown {key} '{part.get('name')}' in model.arch.{key}.name "
                            f"(supported: {', '.join(known)})")
    val = _need(_need(raw, "data", "", where), "val", "data.", where)
    size = _need(val, "input_size", "data.val.", where)
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise UserError(f"{where}: data.val.input_size must be [width, height] in pixels, got {size!r}")
    normalize = (val.get("pipeline") or {}).get("normalize")
    if normalize is None:
        raise UserError(f"{where}: config has no 'data.val.pipeline.normalize' ([mean, std] in BGR order)")
    if not (len(normalize) == 2 and all(len(v) == 3 for v in normalize)):
        raise UserError(f"{where}: data.val.pipeline.normalize must be [[3 means], [3 stds]]")
    class_names = raw.get("class_names")
    num_classes = head.get("num_classes")
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise UserError(f"{where}: model.arch.head.num_classes must be a positive integer")
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise UserError(f"{where}: class_names has {len(class_names)} names but model.arch.head.num_classes is "
                        f"{num_classes}: give one name per class")
    defaults = _merge(DEFAULT_TOOLKIT, {"decode": {"nms_pre": HEAD_DECODING[head["name"]]["nms_pre"]}})
    toolkit = _merge(defaults, raw.get("toolkit"))
    strides = head.get("strides", [8, 16, 32])
    if not (isinstance(strides, (list, tuple)) and strides and all(isinstance(s, int) and s > 0 for s in strides)):
        raise UserError(f"{where}: model.arch.head.strides must be a list of positive integers, got {strides!r}")
    check_input_size((int(size[0]), int(size[1])), strides, fpn, where)
    check_tan_positions((int(size[0]), int(size[1])), strides, fpn, where)
    return Config(
        name=name, path=path, raw=raw, backbone=backbone, fpn=fpn, head=head,
        input_size=(int(size[0]), int(size[1])), keep_ratio=bool(val.get("keep_ratio", True)),
        mean=tuple(float(v) for v in normalize[0]), std=tuple(float(v) for v in normalize[1]),
        class_names=[str(c) for c in class_names], toolkit=toolkit,
    )


def resolve_checkpoint(cfg: Config, checkpoint: str | Path | None) -> Path | None:
    """The checkpoint to use: the given path, else the config's ``toolkit.weights`` in the shared folder."""
    if checkpoint:
        return Path(checkpoint)
    spec = cfg.toolkit.get("weights") or {}
    if not spec.get("file"):
        return None
    rel = Path(spec["file"])
    if rel.is_absolute():
        return rel
    root = shared_dir()
    return root / rel if root is not None and (root / rel).is_file() else None
