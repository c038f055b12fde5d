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

from .errors import UserError
from .paths import configs_dir, shared_dir

BACKBONES = ("ShuffleNetV2", "CustomCspNet")
FPNS = ("PAN",)
HEADS = ("NanoDetHead",)

DEFAULT_TOOLKIT: dict[str, Any] = {
    "weights": None,  # {"file": path relative to the shared folder or absolute, "sha256": hex}
    "export": {"opset": 10},
    "decode": {"score_threshold": 0.05, "nms_iou": 0.6, "max_detections": 100, "nms_pre": 1000},
    "validation": {},
}


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

    def feature_sizes(self) -> list[tuple[int, int]]:
        """(h, w) of each level's feature map, as the backbone computes them (ceil division)."""
        w, h = self.input_size
        return [(-(-h // s), -(-w // s)) for s in self.strides]


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
        raise UserError(f"{where}: class_names has {len(class_names)} names but head.num_classes is {num_classes}")
    toolkit = _merge(DEFAULT_TOOLKIT, raw.get("toolkit"))
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
