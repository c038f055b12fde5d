"""Load NanoDet checkpoints strictly and safely, or build seeded random weights (said loudly).

Accepted layouts: ``{'state_dict': sd}`` (old ``.pth``: with ``epoch`` / ``iter`` too), a raw state_dict,
Lightning ``.ckpt`` files whose keys start with ``model.`` and EMA copies with ``avg_model.`` (preferred),
DDP's ``module.`` prefix. Always ``torch.load(weights_only=True)``: a pickle that would run code is refused.
"""
from __future__ import annotations

import math
import pickletools
import sys
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from contracts.errors import UserError
from contracts.hashing import sha256_file

from .backbone_table import pretrain_note
from .config import Config, resolve_checkpoint
from .safe_checkpoint import read_weights, weights_only_refused_archive
from .training_keys import drop_training_only

OPTIONAL_PREFIXES = ("head.gfl_reg.",)  # built by upstream, never used when share_cls_reg


ZIP_MAGIC = b"PK\x03\x04"   # torch.save's default format is a zip archive
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."  # pickled magic number of old torch.save
CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The model state_dict of a checkpoint file, prefixes removed (``read_checkpoint`` without the copy)."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint file; return its model state_dict with prefixes removed and which copy it is
    (``pick_copy``).

    Loaded with ``weights_only=True`` (nothing in the file can run). Whatever torch.load refuses becomes one
    UserError line saying what the file is: refused pickled code, a truncated or corrupt checkpoint, or not a
    PyTorch checkpoint at all. torch's own warnings while it reads (e.g. about the pickle protocol of a file that
    is not a checkpoint) are not shown: the error line says it all.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    refused_archive = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises assorted types for garbage input
        if not weights_only_refused_archive(path, exc):
            raise UserError(f"{path}: {unreadable_reason(path, exc)}") from None
        refused_archive = True
    if refused_archive:  # e.g. a training .ckpt with hyper-parameter objects: read its tensors only, run nothing
        obj = read_weights(path)
    return pick_copy(named_tensors(obj, path))


def unreadable_reason(path: Path, exc: Exception) -> str:
    """What to tell the user about a file torch.load(weights_only=True) refused, judged from the file itself."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else exc.__class__.__name__
    refused = ("refused: the file holds pickled code or objects that are not plain tensors "
               "(loaded with weights_only=True)")
    if "GLOBAL" in text:  # torch's weights-only unpickler met a class or function it does not allow
        return refused
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_MAGIC))
    if head.startswith(ZIP_MAGIC) or head == LEGACY_MAGIC:
        if isinstance(exc, (EOFError, zipfile.BadZipFile)) or "central directory" in text or "failed finding" in text:
            return f"truncated or corrupt checkpoint ({first[:120]})"
        return f"not a readable PyTorch checkpoint ({first[:120]})"
    if _plain_pickle_names_code(path):  # e.g. pickle.dump at protocol 4, which torch stops reading early
        return refused
    return "not a PyTorch checkpoint (neither the zip archive nor the legacy format that torch.save writes)"


def _plain_pickle_names_code(path: Path) -> bool:
    """Whether the file starts with a whole pickle that names a class or function to call. Read with
    pickletools, which only parses opcodes and never runs anything; random bytes or text are no whole pickle."""
    try:
        with open(path, "rb") as f:
            ops = [op.name for op, _, _ in pickletools.genops(f)]
    except Exception:  # not a whole pickle
        return False
    return bool(ops) and ops[-1] == "STOP" and bool(CODE_OPCODES.intersection(ops))


def extract_state_dict(obj, path) -> dict[str, torch.Tensor]:
    """The model state_dict inside a loaded checkpoint object, prefixes removed."""
    return pick_copy(named_tensors(obj, path))[0]


def named_tensors(obj, path) -> dict[str, torch.Tensor]:
    """The named tensors of a loaded checkpoint (its ``state_dict`` entry where it has one)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise UserError(f"{path}: not a NanoDet checkpoint (no state_dict of named tensors inside)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path}: not a NanoDet checkpoint (no tensors inside)")
    return tensors


def pick_copy(tensors: dict) -> tuple[dict[str, torch.Tensor], str]:
    """The model weights among a checkpoint's tensors and which copy they are: ``avg_model. (EMA)`` where a
    Lightning checkpoint holds the EMA copy (what upstream evaluates with: its ``load_model_weight`` lets
    ``avg_model.X`` win over ``model.X``), else ``model.``, else ``plain`` (keys as the model names them); DDP's
    ``module.`` prefix is removed too."""
    copy = "plain"
    if any(k.startswith("avg_model.") for k in tensors):
        tensors, copy = {k[len("avg_model."):]: v for k, v in tensors.items() if k.startswith("avg_model.")}, \
            "avg_model. (EMA)"
    elif any(k.startswith("model.") for k in tensors):
        tensors, copy = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, "model."
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors, copy


def check_and_load(model: nn.Module, sd: dict[str, torch.Tensor], cfg: Config, path) -> int:
    """Strict load: every key present with the right shape, nothing unexpected (gfl_reg may be absent; the
    training-only aux keys are dropped with a note). Returns how many training-only keys were dropped."""
    expected = model.state_dict()
    sd, dropped = drop_training_only(sd, expected, path)
    cls_key = "head.gfl_cls.0.weight"
    if cls_key in sd and cls_key in expected and sd[cls_key].shape != expected[cls_key].shape:
        got, want = sd[cls_key].shape[0], expected[cls_key].shape[0]
        box = 4 * (cfg.reg_max + 1)
        raise UserError(f"{path}: checkpoint does not match config {cfg.name}: its head has {got} output "
                        f"channels ({got - box} classes + {box} box bins at reg_max {cfg.reg_max}) but the "
                        f"config wants {want} ({cfg.num_classes} classes)")
    missing = [k for k in expected if k not in sd and not k.startswith(OPTIONAL_PREFIXES)]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [f"{k} {tuple(sd[k].shape)} != {tuple(expected[k].shape)}"
                 for k in expected if k in sd and sd[k].shape != expected[k].shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
            problems.append(f"{len(items)} {label} key(s): {shown}")
    if problems:
        raise UserError(f"{path}: checkpoint does not match config {cfg.name}: " + "; ".join(problems))
    full = dict(expected)
    full.update({k: v for k, v in sd.items()})
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in full.items()}, strict=True)
    return dropped


def _calibration_batches(gen: torch.Generator, h: int, w: int) -> list[torch.Tensor]:
    """Inputs with real image statistics: the packaged sample photos, preprocessed as the reference does
    (mean/std of NanoDet), else seeded unit noise where no photos are installed."""
    import cv2
    import numpy as np

    from .preprocess import preprocess
    from .samples import sample_photos

    mean, std = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sample_photos()]
    photos = [p for p in photos if p is not None]
    if not photos:
        return [torch.randn(2, 3, h, w, generator=gen) for _ in range(2)]
    x = np.concatenate([preprocess(p, (w, h), mean, std)[0] for p in photos])
    return [torch.from_numpy(x)]


def random_init(model: nn.Module, seed: int, input_wh: tuple[int, int]) -> None:
    """Seeded weights whose activations stay near unit scale, so fp32 stages can be compared at 1e-4.

    Convs get N(0, 1/fan_in); every BatchNorm then takes its running statistics from a forward pass over
    real sample photos (cumulative average; seeded noise where none are installed), so each normalised map is about N(bias, weight^2) however
    deep the net; the last 1x1 convs are scaled so some, not all, scores pass the 0.05 threshold.

    BN biases are centred at +1 weight (bias = weight + N(0, 0.1)), so about 84% of the activations' inputs are in
    their linear part. Centred at 0, half of every map is cut by the rectifier and the next BN scales the rest back
    up: a random BN net then amplifies any perturbation, float32 rounding included, by about 1.2 per layer, and
    deep backbones differ between two float32 runtimes by more than the fp32 tolerance (EfficientNet-Lite2-512:
    PyTorch float32 against float64 at 1.30 x the tolerance; at +1 weight 0.052 x; every family 5-25 x lower).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0, math.sqrt(1.0 / fan_in), generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
                m.bias.add_(m.weight)  # centred at +1 std: mostly in the activation's linear part (docstring)
            elif callable(getattr(m, "seeded_init", None)):  # modules with other parameters (TAN's transformer)
                m.seeded_init(gen)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
            bn.train()
        w, h = input_wh
        batches = _calibration_batches(gen, h, w)
        for batch in batches:
            model(batch)
        for bn in bns:
            bn.momentum = 0.1
            bn.num_batches_tracked.zero_()
        model.eval()
        # Scale the final 1x1 convs so class logits are about N(-3, 1.5^2) and box logits N(0, 1):
        # scores spread over (0, 1) without saturating (ties would make NMS order arbitrary).
        head, seen = model.head, []
        hooks = [conv.register_forward_hook(lambda mod, i, o: seen.append(o)) for conv in head.gfl_cls]
        model(batches[0])
        for hk in hooks:
            hk.remove()
        c = head.num_classes
        for conv, out in zip(head.gfl_cls, seen):
            for rows, target, bias in ((slice(0, c), 1.5, -3.0), (slice(c, None), 1.0, 0.0)):
                centred = out[:, rows] - conv.bias[rows].view(1, -1, 1, 1)
                conv.weight[rows] *= target / max(float(centred.std()), 1e-6)
                conv.bias[rows] = bias


def warn_random(seed: int, why: str) -> None:
    bar = "!" * 78
    print(f"{bar}\n!! WARNING: {why}\n!! Using SEEDED RANDOM WEIGHTS (seed {seed}). Every artifact and report\n"
          f"!! carries 'weights: random (seed {seed})'. Detections are meaningless; only the\n"
          f"!! agreement between stages is.\n{bar}", file=sys.stderr)


def use_random_weights(model: nn.Module, cfg: Config, seed: int, why: str) -> dict:
    """Warn loudly, fill ``model`` with the seeded random weights of ``cfg``, return their provenance."""
    warn_random(seed, why)
    random_init(model, seed, cfg.input_size)
    provenance = {"weights": f"random (seed {seed})", "kind": "random", "seed": seed}
    note = pretrain_note(cfg.backbone)
    return {**provenance, "backbone_pretrain": note} if note else provenance


def load_weights(model: nn.Module, cfg: Config, checkpoint: str | Path | None = None, seed: int = 0) -> dict:
    """Fill ``model`` with weights; return provenance for manifests and reports (for a checkpoint: its file name,
    sha256, which ``copy`` of the weights was used (``pick_copy``) and how many training-only keys were dropped).

    ``checkpoint`` given: it must load strictly. Not given: the config's shared checkpoint (sha256-checked);
    where that is absent, seeded random weights with a loud warning.
    """
    path = resolve_checkpoint(cfg, checkpoint)
    if path is None:
        spec = cfg.toolkit.get("weights") or {}
        why = (f"checkpoint '{spec['file']}' of {cfg.name} not found (shared folder absent; set NANODET_SHARED)"
               if spec.get("file") else f"config {cfg.name} names no checkpoint and none was given")
        return use_random_weights(model, cfg, seed, why)
    digest = sha256_file(path) if path.is_file() else None
    want = (cfg.toolkit.get("weights") or {}).get("sha256")
    sd, copy = read_checkpoint(path)
    if not checkpoint and want and digest != want:
        raise UserError(f"{path}: sha256 {digest} differs from the config's {want}")
    dropped = check_and_load(model, sd, cfg, path)
    return {"weights": f"checkpoint {path.name}", "kind": "checkpoint", "file": str(path.name), "sha256": digest,
            "copy": copy, "training_only_keys_dropped": dropped}
