"""Conversion options: validation of user choices and the artifact folder name they imply.

The artifact name is the model name (``m-416``) or the config's stem, plus one suffix per non-default option
(``m-416-opset11``, ``m-416-onnx_tf``, ``m-416-onnx2tf``, ``m-416-float16``, ``m-416-nopatches``,
``m-416-upstream``), so that variants never overwrite each other and a name says what it holds. Mixed weight
types: ``m-416-uint8-keep-<8 hex of the --keep patterns>``, ``m-416-auto`` (``m-416-auto0.005`` for another
``--ap-budget``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.errors import UserError
from contracts.hashing import hash_json
from contracts.signature import DEFAULT_LAYOUT, check_layout

DEFAULT_OPSET = 10
SUPPORTED_OPSETS = range(10, 18)  # 10-17: what the TorchScript exporter + onnx-tf 1.10 handle
QUANTIZE_CHOICES = ("float16", "uint8", "auto")   # auto: measured per weight (validation.quantize_search)
DEFAULT_AP_BUDGET = 0.002   # --quantize auto: how far below PyTorch's AP the chosen mix may go
BACKENDS = ("onnx_tf", "onnx2tf", "tf_nhwc")
# tf_nhwc: every upstream config converts with every stage PASS (make zoo BACKEND=tf_nhwc), fastest in TFJS (make bench)
DEFAULT_BACKEND = "tf_nhwc"
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
    layout: str = DEFAULT_LAYOUT   # the exported outputs: per-level, or upstream's single one (contracts.signature)
    keep: tuple[str, ...] = ()      # --keep: weight-name patterns that stay float32 under --quantize uint8|float16
    ap_budget: float | None = None  # --quantize auto: the AP budget (default DEFAULT_AP_BUDGET)

    def __post_init__(self):
        object.__setattr__(self, "opset", check_opset(self.opset))
        if self.quantize not in (None, *QUANTIZE_CHOICES):
            raise UserError(f"--quantize: unknown '{self.quantize}' (choose {' or '.join(QUANTIZE_CHOICES)})")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend: unknown '{self.backend}' (choose {' or '.join(BACKENDS)})")
        if self.patches not in PATCH_CHOICES:
            raise UserError(f"--patches: unknown '{self.patches}' (choose {' or '.join(PATCH_CHOICES)})")
        check_layout(self.layout)
        object.__setattr__(self, "keep", check_keep(self.keep, self.quantize))
        object.__setattr__(self, "ap_budget", check_ap_budget(self.ap_budget, self.quantize))

    def as_dict(self) -> dict:
        """The options for the manifest; ``keep`` and ``ap_budget`` only where they apply."""
        out = asdict(self)
        if not self.keep:
            out.pop("keep")
        if self.ap_budget is None:
            out.pop("ap_budget")
        return out

    def quantize_suffix(self) -> str | None:
        """``uint8``, ``float16``, ``auto`` (``auto0.005`` for another budget), ``uint8-keep-<8 hex of the
        patterns>``: mixed variants never overwrite the plain ones."""
        if not self.quantize:
            return None
        if self.quantize == "auto":
            return "auto" if self.ap_budget == DEFAULT_AP_BUDGET else f"auto{self.ap_budget:g}"
        if self.keep:
            return f"{self.quantize}-keep-{hash_json(sorted(self.keep))[:8]}"
        return self.quantize

    def suffixes(self, default_opset: int = DEFAULT_OPSET) -> list[str]:
        out = []
        if self.opset != default_opset:
            out.append(f"opset{self.opset}")
        if self.backend != DEFAULT_BACKEND:
            out.append(self.backend)
        if self.quantize:
            out.append(self.quantize_suffix())
        if self.patches != "default":
            out.append("nopatches")
        if self.layout != DEFAULT_LAYOUT:
            out.append(self.layout)
        return out


def check_keep(keep, quantize: str | None) -> tuple[str, ...]:
    """``--keep`` as a tuple of non-empty patterns (a comma-separated string is split); only with uint8/float16."""
    items = keep.split(",") if isinstance(keep, str) else list(keep or ())
    patterns = tuple(dict.fromkeys(str(p).strip() for p in items if str(p).strip()))
    if patterns and quantize not in ("uint8", "float16"):
        raise UserError("--keep: applies to --quantize uint8 or float16 (the weights it names stay float32)")
    return patterns


def check_ap_budget(budget, quantize: str | None) -> float | None:
    """``--ap-budget`` as a float in (0, 1) for ``--quantize auto`` (its default there), None otherwise."""
    if quantize != "auto":
        if budget is not None:
            raise UserError("--ap-budget: applies to --quantize auto only")
        return None
    if budget is None:
        return DEFAULT_AP_BUDGET
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise UserError(f"--ap-budget: '{budget}' is not a number (an AP difference, e.g. 0.002)") from None
    if not 0 < value < 1:
        raise UserError(f"--ap-budget: {value:g} is not an AP difference in (0, 1), e.g. 0.002")
    return value


def artifact_name(model_name: str, options: ConvertOptions, default_opset: int = DEFAULT_OPSET) -> str:
    """``m-416`` plus one suffix per non-default option, e.g. ``m-416-onnx2tf-float16``."""
    return "-".join([model_name, *options.suffixes(default_opset)])


def artifact_dir(root: Path, model_name: str, options: ConvertOptions, default_opset: int = DEFAULT_OPSET) -> Path:
    return Path(root) / artifact_name(model_name, options, default_opset)
