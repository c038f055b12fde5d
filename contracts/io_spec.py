"""io specs: how an artifact's own input/output names and layout map onto the model signature (input ``input``
[N,3,H,W] NCHW; outputs ``cls_pred_stride_s`` / ``dis_pred_stride_s``, ``contracts.signature``).

One type, :class:`IoSpec`, for every stage, runner and the bench. Its JSON form (the manifest's ``io_spec`` of
each stage, ``--io-spec`` on the command line, the presets)::

    {"input": {"name": "input_1:0", "layout": "NCHW"},
     "outputs": {"cls_pred_stride_8": "Identity:0", ...}}

An output value may also be ``{"name": "...", "transpose": [0, 2, 1]}`` for artifacts whose outputs are laid
out differently; :meth:`IoSpec.collect` applies the transpose so comparators always see [N, HW, C]. Where one
artifact output packs several signature outputs (upstream's single ``output`` [1, N, C + 4 (reg_max + 1)],
``--layout upstream``), each signature output is a *view* of it: ``{"name": "Identity:0", "view": {"of": "output",
"rows": [0, 2704], "channels": [0, 80]}}``, rows and channels as [start, stop) of axes 1 and 2 (after any
transpose), ``of`` the packed output's own signature name (``contracts.signature.as_per_level`` writes them).
What the converters record besides (the input ``shape``, the TFJS input's ``signature_key``, onnx-tf's
``onnx_name``, the SavedModel's serving ``signature``) is kept and written back unchanged; the runners do not
need it.

A TFJS graph model says its tensor names in ``model.json``'s ``signature``: :func:`io_spec_from_tfjs_signature`
is the one reader of it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError

LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class View:
    """Where a signature output lies inside a packed artifact output: [start, stop) rows (axis 1) and channels
    (axis 2); ``of`` names the packed output in the export's own signature (``output``)."""
    of: str
    rows: tuple[int, int]
    channels: tuple[int, int]

    @classmethod
    def from_dict(cls, spec, where: str) -> "View":
        """Parse and check the JSON form; UserError naming ``where`` and what is wrong."""
        if not isinstance(spec, dict) or not isinstance(spec.get("of"), str):
            raise UserError(f"{where}: view must be {{\"of\", \"rows\": [start, stop], \"channels\": [start, stop]}}")
        spans = []
        for key in ("rows", "channels"):
            span = spec.get(key)
            if not (isinstance(span, (list, tuple)) and len(span) == 2 and all(type(v) is int for v in span)
                    and 0 <= span[0] < span[1]):
                raise UserError(f"{where}: view {key} must be [start, stop] with 0 <= start < stop, got {span}")
            spans.append((span[0], span[1]))
        return cls(spec["of"], *spans)

    def to_dict(self) -> dict:
        return {"of": self.of, "rows": list(self.rows), "channels": list(self.channels)}

    def take(self, value: np.ndarray, where: str) -> np.ndarray:
        """The view's part of ``value`` [N, rows, channels]; UserError where ``value`` is too small for it (numpy
        would silently cut the slice short)."""
        if value.ndim != 3 or value.shape[1] < self.rows[1] or value.shape[2] < self.channels[1]:
            raise UserError(f"{where}: output '{self.of}' has shape {list(value.shape)}, too small for rows "
                            f"{list(self.rows)} and channels {list(self.channels)}")
        return value[:, self.rows[0]:self.rows[1], self.channels[0]:self.channels[1]]


@dataclass
class OutputMap:
    name: str
    transpose: list[int] | None = None
    view: View | None = None             # a part of a packed artifact output (upstream's single output)

    def to_json(self):
        """The JSON form: the bare name where nothing else is set."""
        if self.transpose is None and self.view is None:
            return self.name
        out = {"name": self.name}
        if self.transpose is not None:
            out["transpose"] = list(self.transpose)
        if self.view is not None:
            out["view"] = self.view.to_dict()
        return out

    def take(self, value, where: str) -> np.ndarray:
        """This signature output from the artifact output's ``value``: transposed, then its view taken."""
        value = np.asarray(value)
        if self.transpose is not None:
            value = value.transpose(self.transpose)
        return self.view.take(value, where) if self.view is not None else value


@dataclass
class IoSpec:
    input_name: str
    layout: str = "NCHW"
    outputs: dict[str, OutputMap] = field(default_factory=dict)  # signature name -> artifact output
    input_shape: list[int] | None = None    # the artifact's input shape, where recorded
    input_key: str | None = None            # TFJS: the input's key in model.json's signature
    onnx_input: str | None = None           # onnx-tf: the ONNX input behind the SavedModel's input key
    signature: str | None = None            # SavedModel: the serving signature these names belong to

    @classmethod
    def identity(cls, output_names: list[str], input_name: str = "input", input_shape=None) -> "IoSpec":
        """The spec of an artifact that has the model signature itself (NCHW, outputs by their own names)."""
        return cls(input_name, "NCHW", {n: OutputMap(n) for n in output_names}, input_shape=input_shape)

    @classmethod
    def from_dict(cls, spec, where: str = "io spec", required_outputs: list[str] | None = None) -> "IoSpec":
        """Parse and check the JSON form; UserError naming ``where`` and what is wrong."""
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
                view = target.get("view")
                outputs[sig] = OutputMap(target["name"], target.get("transpose"),
                                         View.from_dict(view, f"{where}: output '{sig}'") if view is not None else None)
            else:
                raise UserError(f"{where}: io spec output '{sig}' must be a name or {{\"name\", \"transpose\", "
                                f"\"view\"}}")
        return cls(inp["name"], layout, outputs, input_shape=inp.get("shape"), input_key=inp.get("signature_key"),
                   onnx_input=inp.get("onnx_name"), signature=spec.get("signature")).require(required_outputs, where)

    @classmethod
    def of(cls, spec, where: str = "io spec", required_outputs: list[str] | None = None) -> "IoSpec":
        """``spec`` itself where it is an IoSpec, else parsed from its JSON form; checked for the outputs."""
        if isinstance(spec, cls):
            return spec.require(required_outputs, where)
        return cls.from_dict(spec, where, required_outputs)

    def require(self, required_outputs: list[str] | None, where: str = "io spec") -> "IoSpec":
        """``self``, where it maps an artifact output to each of ``required_outputs``; UserError otherwise."""
        missing = [n for n in required_outputs or () if n not in self.outputs]
        if missing:
            raise UserError(f"{where}: io spec maps no artifact output to {', '.join(missing)}")
        return self

    def to_dict(self) -> dict:
        """The JSON form (what :meth:`from_dict` reads back to an equal spec)."""
        inp = {"name": self.input_name}
        if self.input_key is not None:
            inp["signature_key"] = self.input_key
        inp["layout"] = self.layout
        if self.input_shape is not None:
            inp["shape"] = list(self.input_shape)
        if self.onnx_input is not None:
            inp["onnx_name"] = self.onnx_input
        outs = {k: v.to_json() for k, v in self.outputs.items()}
        out = {"input": inp, "outputs": outs}
        if self.signature is not None:
            out["signature"] = self.signature
        return out

    def artifact_outputs(self) -> list[str]:
        """The artifact's output tensors to fetch, each once (several views may read one packed output)."""
        return list(dict.fromkeys(m.name for m in self.outputs.values()))

    def output_labels(self) -> dict[str, str]:
        """{artifact output tensor: the signature output it gives, or for a packed one the name it is a view of}."""
        return {m.name: m.view.of if m.view is not None else sig for sig, m in self.outputs.items()}

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
            out[sig] = target.take(value, where)
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


def _dims(shape_proto) -> list[int] | None:
    try:
        return [int(d.get("size", -1)) for d in shape_proto["dim"]]
    except (KeyError, TypeError, ValueError):
        return None


def _output_by_key(outputs: dict, key: str) -> str | None:
    """The tensor name of the signature output with key ``key`` (also ``key:0``), or None."""
    for k, info in outputs.items():
        if k == key or k.split(":")[0] == key:
            return info.get("name", k)
    return None


def _output_by_shape(outputs: dict, shape: list[int], sig_name: str, model_json: Path) -> str:
    same = [info.get("name", key) for key, info in outputs.items() if _dims(info.get("tensorShape", {})) == shape]
    if len(same) != 1:
        raise UserError(f"{model_json}: cannot tell which output is {sig_name} from the signature "
                        f"({len(same)} outputs of shape {shape}); give an io spec")
    return same[0]


def io_spec_from_tfjs_signature(model_json: Path, output_shapes: dict[str, list[int]],
                                saved_model: IoSpec | None = None) -> IoSpec:
    """The io spec of a TFJS graph model, from ``model.json``'s ``signature`` (UserError where it says too little).

    ``output_shapes``: {signature output name: shape} (``contracts.signature.output_shapes``).
    With ``saved_model``, the io spec of the SavedModel the model was converted from: each output is the tensor
    that output's serving key became, and the input layout is the SavedModel's. Without: each output is the one
    whose key is the signature name (the ONNX name survives through the SavedModel signature), else the one
    output of its shape; the layout follows from the input shape. A SavedModel output read as views (upstream's
    single output) gives the same views of its TFJS tensor.
    """
    model_json = Path(model_json)
    try:
        sig = json.loads(model_json.read_text()).get("signature") or {}
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise UserError(f"{model_json}: cannot read TFJS model.json ({exc.__class__.__name__})") from None
    inputs, outputs = sig.get("inputs") or {}, sig.get("outputs") or {}
    if len(inputs) != 1 or not outputs:
        raise UserError(f"{model_json}: model.json has no usable signature (one input, named outputs); "
                        f"give an io spec")
    (in_key, in_info), = inputs.items()
    dims = _dims(in_info.get("tensorShape", {})) or []
    mapping = {}
    for sig_name, shape in output_shapes.items():
        key = saved_model.outputs[sig_name].name if saved_model is not None else sig_name
        found = _output_by_key(outputs, key)
        if found is None and saved_model is not None:
            raise UserError(f"{model_json}: signature has no output '{key}' (has {sorted(outputs)})")
        mapping[sig_name] = found if found is not None else _output_by_shape(outputs, shape, sig_name, model_json)
    if saved_model is not None:
        layout = saved_model.layout
    else:
        layout = "NHWC" if len(dims) == 4 and dims[3] == 3 and dims[1] != 3 else "NCHW"
    views = {k: saved_model.outputs[k].view if saved_model is not None else None for k in mapping}
    return IoSpec(in_info.get("name", in_key), layout, {k: OutputMap(v, view=views[k]) for k, v in mapping.items()},
                  input_shape=dims, input_key=in_key)
