"""The one runner interface, and io specs: how an artifact's own input/output names and layout map to the
toolkit signature (input ``input`` [N,3,H,W] NCHW; outputs ``cls_pred_stride_s`` / ``dis_pred_stride_s``).

io spec (JSON, see docs/ARCHITECTURE.md)::

    {"input": {"name": "input_1:0", "layout": "NCHW"},
     "outputs": {"cls_pred_stride_8": "Identity:0", ...}}

An output value may also be ``{"name": "...", "transpose": [0, 2, 1]}`` for artifacts whose outputs are laid
out differently; the runner applies the transpose so comparators always see [N, HW, C].
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from nanodet_ref.errors import UserError

LAYOUTS = ("NCHW", "NHWC")


class Runner(Protocol):
    """``run`` takes a float32 NCHW batch [N,3,H,W] and returns {signature output name: [N, HW, C]}."""

    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class OutputMap:
    name: str
    transpose: list[int] | None = None


@dataclass
class IoSpec:
    input_name: str
    layout: str = "NCHW"
    outputs: dict[str, OutputMap] = field(default_factory=dict)  # signature name -> artifact output

    @classmethod
    def identity(cls, output_names: list[str], input_name: str = "input") -> "IoSpec":
        return cls(input_name, "NCHW", {n: OutputMap(n) for n in output_names})

    @classmethod
    def from_dict(cls, spec, where: str = "io spec", required_outputs: list[str] | None = None) -> "IoSpec":
        if not isinstance(spec, dict) or not isinstance(spec.get("input"), dict) \
                or not isinstance(spec.get("outputs"), dict):
            raise UserError(f"{where}: io spec must be {{\"input\": {{\"name\", \"layout\"}}, \"outputs\": {{...}}}}")
        inp = spec["input"]
        if not isinstance(inp.get("name"), str) or not inp["name"]:
            raise UserError(f"{where}: io spec input has no 'name'")
        layout = str(inp.get("layout", "NCHW")).upper()
        if layout not in LAYOUTS:
            raise UserError(f"{where}: io spec input layout must be NCHW or NHWC, got '{inp.get('layout')}'")
        outputs = {}
        for sig, target in spec["outputs"].items():
            if isinstance(target, str):
                outputs[sig] = OutputMap(target)
            elif isinstance(target, dict) and isinstance(target.get("name"), str):
                outputs[sig] = OutputMap(target["name"], target.get("transpose"))
            else:
                raise UserError(f"{where}: io spec output '{sig}' must be a name or {{\"name\", \"transpose\"}}")
        if required_outputs:
            missing = [n for n in required_outputs if n not in outputs]
            if missing:
                raise UserError(f"{where}: io spec maps no artifact output to {', '.join(missing)}")
        return cls(inp["name"], layout, outputs)

    def to_dict(self) -> dict:
        outs = {k: (v.name if v.transpose is None else {"name": v.name, "transpose": v.transpose})
                for k, v in self.outputs.items()}
        return {"input": {"name": self.input_name, "layout": self.layout}, "outputs": outs}

    def prepare_input(self, batch: np.ndarray) -> np.ndarray:
        """NCHW batch -> the artifact's layout."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if self.layout == "NHWC" else batch

    def collect(self, produced: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        """Artifact outputs (by its names) -> signature outputs."""
        out = {}
        for sig, target in self.outputs.items():
            value = produced.get(target.name)
            if value is None:
                alt = target.name[:-2] if target.name.endswith(":0") else target.name + ":0"
                value = produced.get(alt)
            if value is None:
                raise UserError(f"{where}: artifact has no output '{target.name}' (mapped to {sig}); "
                                f"it has {', '.join(sorted(produced))}")
            value = np.asarray(value)
            if target.transpose is not None:
                value = value.transpose(target.transpose)
            out[sig] = value
        return out


def load_io_spec(text_or_path: str, where: str = "--io-spec", required_outputs=None) -> IoSpec:
    """An io spec from a JSON string or a JSON file path."""
    text = str(text_or_path).strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"{where}: '{text}' is neither JSON nor an existing file")
        where, text = str(path), path.read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: io spec is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return IoSpec.from_dict(spec, where, required_outputs)


def stack_items(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image results [1, ...] -> one batch [N, ...] per name."""
    return {k: np.concatenate([it[k] for it in items], axis=0) for k in items[0]} if items else {}
