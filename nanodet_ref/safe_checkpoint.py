"""Read the tensors of a torch.save zip archive without running anything the file names.

Why: a Lightning training checkpoint (upstream NanoDet's ``.ckpt``) holds, beside ``state_dict``, optimizer and
scheduler states, loop and callback states and hyper-parameter objects of arbitrary classes. ``torch.load(...,
weights_only=True)`` refuses the whole file as soon as it meets one such class; unpickling it normally would run
that class's code. This reader parses the archive's ``data.pkl`` with an Unpickler whose ``find_class`` imports
nothing:

- tensor-rebuild functions, storage types, dtypes, ``torch.Size``, ``OrderedDict``, ``set`` are answered by this
  module's own equivalents (a tensor is a strided view of the raw bytes of its ``data/<key>`` record);
- every other class or function the pickle names becomes an inert ``StandIn``: "calling" it, filling it or
  setting its state only records the arguments. Nothing is imported, instantiated or run.

So the tensors come back wherever they sit (a hyper-parameter object's attributes included, as
``StandIn.state``), and what the weights are read from (``state_dict``) must hold tensors only: a stand-in there
is refused, as ``weights_only`` refuses it.
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import torch

from contracts.errors import UserError

REFUSED = "refused: the file holds pickled code or objects that are not plain tensors"

STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,  # its numel counts bytes; _rebuild_tensor_v3 names the dtype
}

DTYPE_NAMES = ("float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32",
               "int", "int16", "short", "int8", "uint8", "bool", "complex64", "complex128", "cfloat", "cdouble")


class StandIn:
    """What a pickled object of a class this reader does not trust becomes: a record, never the object.

    ``origin`` is the ``module.name`` the pickle named; ``args`` what it was called or created with; ``state``
    what ``__setstate__`` would have received; ``items`` / ``listitems`` what it would have been filled with.
    """

    origin = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.kwargs, self.state, self.items, self.listitems = args, kwargs, None, {}, []
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.listitems.append(value)

    def extend(self, values):
        self.listitems.extend(values)

    def __repr__(self):
        return f"<not loaded: {self.origin}>"


class Storage:
    """The raw bytes of one ``data/<key>`` record and the dtype its storage type names."""

    def __init__(self, raw: torch.Tensor, dtype: torch.dtype):
        self.raw, self.dtype = raw, dtype


class StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


def _strided(storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensor ``torch._utils._rebuild_tensor`` would make, as a view of the storage's bytes; checked in bounds."""
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError("a tensor's storage is not a storage record of this archive")
    dtype = dtype or storage.dtype
    if not (isinstance(dtype, torch.dtype) and isinstance(offset, int) and _ints(size) and _ints(stride)
            and len(size) == len(stride) and offset >= 0):
        raise pickle.UnpicklingError("a tensor's offset, size or stride is malformed")
    itemsize = torch.empty((), dtype=dtype).element_size()
    if storage.raw.numel() % itemsize:
        raise pickle.UnpicklingError("a storage's byte length is not a whole number of elements")
    flat = storage.raw.view(dtype)
    if any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError("a tensor has a negative size or stride")
    if all(n > 0 for n in size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= flat.numel():
        raise pickle.UnpicklingError("a tensor reaches past the end of its storage")
    return flat.as_strided(tuple(size), tuple(stride), offset)


def _ints(values: Any) -> bool:
    return isinstance(values, (tuple, list)) and all(isinstance(v, int) for v in values)


def rebuild_tensor(storage, offset, size, stride, *_ignored):
    """Stands for ``torch._utils._rebuild_tensor`` and ``_rebuild_tensor_v2`` (requires_grad, hooks, metadata
    are dropped: the tensors are data)."""
    return _strided(storage, offset, size, stride)


def rebuild_tensor_v3(storage, offset, size, stride, requires_grad, backward_hooks, dtype, *_ignored):
    """Stands for ``torch._utils._rebuild_tensor_v3``: an untyped storage viewed as ``dtype``."""
    return _strided(storage, offset, size, stride, dtype)


def rebuild_parameter(data, *_ignored):
    """Stands for ``_rebuild_parameter`` / ``_rebuild_parameter_with_state``: the parameter's tensor."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter holds no tensor")
    return data


def rebuild_from_type(func, new_type, args, state):
    """Stands for ``torch._tensor._rebuild_from_type_v2`` (tensor subclasses): the plain tensor, the subclass
    and its state dropped."""
    if func not in (rebuild_tensor, rebuild_tensor_v3, rebuild_parameter) or not isinstance(args, tuple):
        raise pickle.UnpicklingError("a tensor subclass is rebuilt by a function that is not a tensor rebuild")
    return func(*args)


def latin1_bytes(text, encoding="latin1"):
    """Stands for ``_codecs.encode`` as protocol-2 pickles use it for ``bytes``."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only read for latin1 bytes")
    return text.encode("latin1")


TRUSTED = {
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): rebuild_from_type,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): latin1_bytes,
}


class TensorOnlyUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch zip archive: tensors from the archive's records, plain containers,
    and a StandIn for every other global (see the module docstring)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, Storage] = {}
        self.stand_in_types: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in TRUSTED:
            return TRUSTED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if module == "torch" and name in DTYPE_NAMES:  # a fixed list: no getattr on torch with a file's names
            return getattr(torch, name)
        origin = f"{module}.{name}"
        if origin not in self.stand_in_types:  # a fresh subclass per name: NEWOBJ needs a type; nothing imported
            self.stand_in_types[origin] = type(f"StandIn[{origin}]", (StandIn,), {"origin": origin})
        return self.stand_in_types[origin]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
        _, kind, key, _location, numel = pid[:5]
        if not isinstance(kind, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError("malformed storage reference")
        if key not in self.storages:
            data = self.archive.read(f"{self.prefix}data/{key}")
            raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
            self.storages[key] = Storage(raw, kind.dtype)
        return self.storages[key]


def _archive_prefix(archive: zipfile.ZipFile, path: Path) -> str:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(pickles) != 1:
        raise UserError(f"{path}: not a PyTorch checkpoint (a torch.save archive has one data.pkl, found "
                        f"{len(pickles)})")
    prefix = pickles[0][: -len("data.pkl")]
    order = f"{prefix}byteorder"
    if order in archive.namelist() and archive.read(order).strip() != b"little":
        raise UserError(f"{path}: checkpoint written on a big-endian machine: not supported (re-save it on a "
                        f"little-endian one)")
    return prefix


def load_tensors_only(path: str | Path) -> Any:
    """The object a torch.save zip archive holds, with real tensors and plain containers and a StandIn for every
    object of any other class (never imported, never run). UserError where the file is no such archive."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, path)
            with archive.open(f"{prefix}data.pkl") as f:
                return TensorOnlyUnpickler(f, archive, prefix).load()
    except UserError:
        raise
    except zipfile.BadZipFile as exc:
        raise UserError(f"{path}: truncated or corrupt checkpoint ({exc})") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError,
            RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({first[:120]})") from None


def stand_ins(obj: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(location, origin) of every StandIn in ``obj``, depth first (containers and stand-ins' contents)."""
    if isinstance(obj, StandIn):
        yield where or "<file>", obj.origin
        children = [("args", obj.args), ("state", obj.state), ("items", obj.items), ("listitems", obj.listitems)]
        for label, child in children:
            yield from stand_ins(child, f"{where}.{label}" if where else label)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from stand_ins(value, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(obj):
            yield from stand_ins(value, f"{where}[{i}]")


def read_weights(path: str | Path) -> dict:
    """A checkpoint's weights read by ``load_tensors_only``: the file's mapping (``state_dict`` and the rest;
    the rest may hold stand-ins, which are ignored). Refused (UserError) where the weights themselves, i.e.
    ``state_dict`` or, without one, the whole file, hold anything but tensors and plain containers."""
    obj = load_tensors_only(path)
    weights = obj.get("state_dict") if isinstance(obj, dict) and "state_dict" in obj else obj
    try:
        found = next(stand_ins(weights, "state_dict" if weights is not obj else ""), None)
    except RecursionError:   # a container holding itself (only a crafted file does that)
        raise UserError(f"{path}: {REFUSED} (its weights hold a self-referencing container)") from None
    if found is not None:
        where, origin = found
        raise UserError(f"{path}: {REFUSED} ({where} is a pickled {origin}; it was not run)")
    return obj


def weights_only_refused_archive(path: str | Path, exc: Exception) -> bool:
    """Whether ``torch.load(weights_only=True)`` failed on a torch.save zip archive only because the pickle names
    a class or function it does not allow (then ``read_weights`` can still read the tensors)."""
    try:
        with open(path, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
    except OSError:
        return False
    return is_zip and "GLOBAL" in str(exc)
