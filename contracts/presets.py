"""Foreign artifacts we know: for each, the config it was made from, where it lies in the shared folder and its
io spec (``commands foreign --preset NAME``, ``commands audit --preset NAME``, the bench)."""
from __future__ import annotations

from .errors import UserError
from .io_spec import IoSpec

PRESETS = {
    "vladmandic-nanodet-m": {
        "model": "m-416",
        "shared_path": ["reference", "vladmandic-nanodet-m", "nanodet-m.json"],
        "io_spec": {
            "input": {"name": "input_1:0", "layout": "NCHW"},
            "outputs": {
                "cls_pred_stride_8": "Identity:0", "cls_pred_stride_16": "Identity_1:0",
                "cls_pred_stride_32": "Identity_2:0", "dis_pred_stride_8": "Identity_3:0",
                "dis_pred_stride_16": "Identity_4:0", "dis_pred_stride_32": "Identity_5:0",
            },
        },
    },
}


def find_preset(name: str) -> dict:
    """The preset ``name``; UserError naming the known ones where there is none."""
    if name not in PRESETS:
        raise UserError(f"--preset: unknown '{name}' (known: {', '.join(PRESETS)})")
    return PRESETS[name]


def preset_io_spec(name: str, where: str, required_outputs: list[str] | None = None) -> IoSpec:
    """The io spec of the preset ``name``, checked (``where`` names it in errors)."""
    return IoSpec.from_dict(find_preset(name)["io_spec"], where, required_outputs)
