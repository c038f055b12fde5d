"""Conversion options: validation of user choices and the artifact folder name they imply.

The artifact name is the model name (``m-416``) or the config's stem, plus one suffix per non-default option
(``m-416-opset11``, ``m-416-onnx2tf``, ``m-416-float16``, ``m-416-nopatches``), so that variants never overwrite
each other and a name says what it holds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.errors import UserError

DEFAULT_OPSET = 10
SUPPORTED_OPSETS = range(10, 18)  # 10-17: what the TorchScript exporter + onnx-tf 1.10 handle
QUANTIZE_CHOICES = ("float16", "uint8")
BACKENDS = ("onnx_tf", "onnx2tf", "tf_nhwc")
DEFAULT_BACKEND = "onnx_tf"
PATCH_CHOICES = ("default", "none")


def check_opset(opset) -> int:
    """The opset as an int, or a UserError naming the supported range."""
    text = str(opset).strip()
    if isinstance(opset, bool) or not text.lstrip("-").isdigit():
        raise UserError(f"unsupported opset {opset} (supported: {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1})")
    value = int(text)
    if value not in SUPPORTED_OPSETS:
        raise UserError(f"unsupported opset {value} (supported: {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1})")
    return value


@dataclass(frozen=True)
class ConvertOptions:
    """What the user chose; ``None`` quantize means float32."""

    opset: int = DEFAULT_OPSET
    quantize: str | None = None
    backend: str = DEFAULT_BACKEND
    patches: str = "default"

    def __post_init__(self):
        object.__setattr__(self, "opset", check_opset(self.opset))
        if self.quantize not in (None, *QUANTIZE_CHOICES):
            raise UserError(f"--quantize: unknown '{self.quantize}' (choose {' or '.join(QUANTIZE_CHOICES)})")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend: unknown '{self.backend}' (choose {' or '.join(BACKENDS)})")
        if self.patches not in PATCH_CHOICES:
            raise UserError(f"--patches: unknown '{self.patches}' (choose {' or '.join(PATCH_CHOICES)})")

    def as_dict(self) -> dict:
        return asdict(self)

    def suffixes(self, default_opset: int = DEFAULT_OPSET) -> list[str]:
        out = []
        if self.opset != default_opset:
            out.append(f"opset{self.opset}")
        if self.backend != DEFAULT_BACKEND:
            out.append(self.backend)
        if self.quantize:
            out.append(self.quantize)
        if self.patches != "default":
            out.append("nopatches")
        return out


def artifact_name(model_name: str, options: ConvertOptions, default_opset: int = DEFAULT_OPSET) -> str:
    """``m-416`` plus one suffix per non-default option, e.g. ``m-416-onnx2tf-float16``."""
    return "-".join([model_name, *options.suffixes(default_opset)])


def artifact_dir(root: Path, model_name: str, options: ConvertOptions, default_opset: int = DEFAULT_OPSET) -> Path:
    return Path(root) / artifact_name(model_name, options, default_opset)
