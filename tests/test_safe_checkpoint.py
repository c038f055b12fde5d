"""Training checkpoints with optimizer, scheduler, loop, callback and hyper-parameter objects: the weights are
read, nothing the file names is imported, instantiated or run."""
from __future__ import annotations

import sys
import types
import zipfile

import pytest
import torch
from torch import nn

from contracts.errors import UserError
from nanodet_ref.checkpoint import check_and_load, read_state_dict
from nanodet_ref.safe_checkpoint import Storage, StandIn, _strided, load_tensors_only, stand_ins
from nanodet_ref.training_keys import drop_training_only

CALLS: list[str] = []


def record_call(what):
    """What a hostile __reduce__ asks the unpickler to call: it must never run."""
    CALLS.append(what)


class HyperParams:
    """A hyper-parameter object as Lightning saves one (``save_hyperparameters``); its code must never run."""

    def __init__(self, lr, anchor):
        self.lr, self.anchor = lr, anchor
        CALLS.append("__init__")

    def __setstate__(self, state):
        CALLS.append("__setstate__")
        self.__dict__.update(state)


class AttributeDict(dict):
    """A dict subclass, as Lightning's own hyper-parameter container is."""


class RunsOnLoad:
    def __reduce__(self):
        return (record_call, ("__reduce__ ran",))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)


def lightning_checkpoint(path, weights_extra=None):
    """What a Lightning training run writes for upstream NanoDet: model. and avg_model. copies of the weights
    beside real optimizer / scheduler states, loops, callbacks and hyper-parameter objects."""
    gen = torch.Generator().manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5)
    model.conv.weight.sum().backward()
    opt.step()
    sched.step()
    sd = model.state_dict()
    state_dict = {**{f"model.{k}": v for k, v in sd.items()}, **{f"avg_model.{k}": v + 1 for k, v in sd.items()}}
    state_dict.update(weights_extra or {})
    hparams = AttributeDict(cfg=HyperParams(0.001, torch.arange(6.0).view(2, 3)))
    ckpt = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.9.0", "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'mAP'}": {"best_model_score": torch.tensor(0.3),
                                                            "best_model_path": "/runs/best.ckpt"}},
        "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs", "hyper_parameters": hparams, "on_load": RunsOnLoad(),
    }
    torch.save(ckpt, path)
    CALLS.clear()
    return sd, opt.state_dict()


def test_training_checkpoint_reads_the_ema_weights_and_runs_nothing(tmp_path):
    path = tmp_path / "train.ckpt"
    sd, opt_state = lightning_checkpoint(path)
    with pytest.raises(Exception, match="GLOBAL"):  # the file is one that weights_only refuses
        torch.load(path, weights_only=True)
    got = read_state_dict(path)
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], sd[k] + 1) for k in sd)  # the EMA (avg_model.) copy
    assert CALLS == []

    whole = load_tensors_only(path)
    assert CALLS == []
    hparams = whole["hyper_parameters"]
    assert isinstance(hparams, StandIn) and hparams.origin == f"{AttributeDict.__module__}.AttributeDict"
    cfg = hparams.items["cfg"]
    assert isinstance(cfg, StandIn) and not isinstance(cfg, HyperParams)
    assert cfg.origin == f"{HyperParams.__module__}.HyperParams"
    assert torch.equal(cfg.state["anchor"], torch.arange(6.0).view(2, 3)) and cfg.state["lr"] == 0.001
    assert whole["on_load"].origin.endswith("record_call") and whole["on_load"].args == ("__reduce__ ran",)
    exp_avg = whole["optimizer_states"][0]["state"][0]["exp_avg"]
    assert torch.equal(exp_avg, opt_state["state"][0]["exp_avg"])
    assert whole["lr_schedulers"][0]["last_epoch"] == 1
    assert torch.equal(whole["callbacks"]["ModelCheckpoint{'monitor': 'mAP'}"]["best_model_score"],
                       torch.tensor(0.3))
    assert [origin for _, origin in stand_ins(whole)].count(f"{HyperParams.__module__}.HyperParams") == 1


def test_an_object_inside_the_weights_is_refused(tmp_path):
    """Objects elsewhere are ignored, but the weights themselves must be tensors."""
    path = tmp_path / "bad.ckpt"
    lightning_checkpoint(path, weights_extra={"avg_model.conv.weight": RunsOnLoad()})
    with pytest.raises(UserError, match=r"bad.ckpt: refused: the file holds pickled code .*state_dict\."
                                        r"avg_model.conv.weight is a pickled .*record_call"):
        read_state_dict(path)
    assert CALLS == []


def test_modules_a_file_names_are_never_imported(tmp_path):
    """A class from a module that does not exist here: a normal unpickler would have to import it; this reader
    records its name."""
    fake = types.ModuleType("helper_plus_absent_module")

    class Settings:
        pass

    Settings.__module__ = fake.__name__
    Settings.__qualname__ = "Settings"
    fake.Settings = Settings
    sys.modules[fake.__name__] = fake
    try:
        torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": Settings()}, tmp_path / "x.ckpt")
    finally:
        del sys.modules[fake.__name__]
    got = load_tensors_only(tmp_path / "x.ckpt")
    assert got["hyper_parameters"].origin == "helper_plus_absent_module.Settings"
    assert fake.__name__ not in sys.modules
    assert torch.equal(read_state_dict(tmp_path / "x.ckpt")["w"], torch.ones(2))


def test_reader_equals_torch_load_on_views_and_dtypes(tmp_path):
    """Shared storages, offsets, transposes, 0-d and empty tensors, every common dtype: the same values,
    shapes, strides and dtypes as torch.load gives."""
    base = torch.arange(24, dtype=torch.float32).view(4, 6)
    obj = {"base": base, "t": base.t(), "slice": base[1:, 2:5], "row": base[2],
           "scalar": torch.tensor(7, dtype=torch.int64),
           "empty": torch.zeros(0, 3), "half": torch.linspace(-2, 2, 5, dtype=torch.float16),
           "bf16": torch.linspace(-2, 2, 5).to(torch.bfloat16), "bool": torch.tensor([True, False, True]),
           "int8": torch.tensor([-3, 4], dtype=torch.int8), "f64": torch.tensor([1e-300, 2.5], dtype=torch.float64),
           "nested": [(torch.ones(2, 2), {"x": torch.full((3,), 2, dtype=torch.int32)})], "text": "kept", "n": 3}
    torch.save(obj, tmp_path / "plain.pth")
    ours = load_tensors_only(tmp_path / "plain.pth")
    theirs = torch.load(tmp_path / "plain.pth", weights_only=True)
    flat_ours, flat_theirs = _flatten(ours), _flatten(theirs)
    assert list(flat_ours) == list(flat_theirs)
    for key, value in flat_theirs.items():
        mine = flat_ours[key]
        if isinstance(value, torch.Tensor):
            assert (mine.dtype, mine.shape, mine.stride()) == (value.dtype, value.shape, value.stride()), key
            assert torch.equal(mine, value), key
        else:
            assert mine == value
    ours["base"][0, 0] = 100.0  # views share their storage, as torch.load's do
    assert ours["t"][0, 0] == 100.0


def _flatten(obj, where=""):
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{where}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{where}[{i}]"))
    else:
        out[where] = obj
    return out


def test_out_of_bounds_tensor_is_refused():
    storage = Storage(torch.zeros(16, dtype=torch.uint8), torch.float32)  # 4 floats
    assert _strided(storage, 1, (3,), (1,)).shape == (3,)
    with pytest.raises(Exception, match="past the end"):
        _strided(storage, 2, (3,), (1,))
    with pytest.raises(Exception, match="malformed"):
        _strided(storage, 0, (2, 2), (1,))


def test_damaged_archives_give_one_line(tmp_path):
    path = tmp_path / "t.ckpt"
    lightning_checkpoint(path)
    data = path.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut.ckpt: truncated or corrupt checkpoint"):
        load_tensors_only(tmp_path / "cut.ckpt")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "gap.ckpt", "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                dst.writestr(info, src.read(info))
    with pytest.raises(UserError, match="gap.ckpt: not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "gap.ckpt")


def test_training_only_keys_are_dropped_other_keys_stay_errors(capsys, tmp_path):
    model_keys = ["backbone.w", "head.b"]
    sd = {"backbone.w": 1, "head.b": 2, "aux_fpn.x": 3, "aux_head.y": 4, "aux_head.z": 5}
    path = tmp_path / "m.ckpt"
    kept, dropped = drop_training_only(sd, model_keys, path)
    assert kept == {"backbone.w": 1, "head.b": 2} and dropped == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.ckpt: dropped 3 training-only keys (aux_fpn.*, aux_head.*" in err[0]
    # read again in the same run (export, audit, validation): the same keys dropped, the line not repeated
    assert drop_training_only(sd, model_keys, path) == (kept, 3)
    assert capsys.readouterr().err == ""
    assert drop_training_only({"backbone.w": 1}, model_keys, "m.pth") == ({"backbone.w": 1}, 0)
    assert capsys.readouterr().err == ""

    from nanodet_ref.config import load_config
    from nanodet_ref.model import build_model

    cfg = load_config("m-320")
    model = build_model(cfg)
    sd = {**model.state_dict(), "aux_head.gfl_cls.0.weight": torch.zeros(1), "extra.weight": torch.zeros(1)}
    with pytest.raises(UserError, match=r"1 unexpected key\(s\): extra.weight$"):
        check_and_load(model, sd, cfg, "x.ckpt")


def test_real_training_checkpoint_reads_as_torch_load_does(shared):
    """Upstream's 416 .ckpt (model. and avg_model. copies, aux_* included): every tensor equal to torch.load's."""
    path = shared / "weights" / "nanodet-plus-m-416.ckpt"
    ours = load_tensors_only(path)
    theirs = torch.load(path, weights_only=True)
    assert {k: v for k, v in ours.items() if k != "state_dict"} == \
        {k: v for k, v in theirs.items() if k != "state_dict"}
    assert list(ours["state_dict"]) == list(theirs["state_dict"]) and len(theirs["state_dict"]) == 1774
    for key, value in theirs["state_dict"].items():
        mine = ours["state_dict"][key]
        assert mine.dtype == value.dtype and torch.equal(mine, value), key


def test_a_self_referencing_container_in_the_weights_is_one_line(tmp_path):
    """A crafted file whose weights hold a list containing itself is refused in one line, not a RecursionError."""
    loop = []
    loop.append(loop)
    path = tmp_path / "loop.ckpt"
    lightning_checkpoint(path, weights_extra={"avg_model.extra": loop})
    with pytest.raises(UserError, match=r"loop.ckpt: refused: .*self-referencing container"):
        read_state_dict(path)
    assert CALLS == []
