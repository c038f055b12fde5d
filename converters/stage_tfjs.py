"""Stage 4, TF SavedModel -> TFJS graph model (``tfjs/model.json`` + weight shards) with tensorflowjs' converter.

float32 by default; ``--quantize float16|uint8`` stores every weight in that type (TFJS dequantises at load);
``--keep PATTERNS`` keeps the weights they name float32, ``--quantize auto`` measures which weights may shrink
(``converters.tfjs_mixed``: a per-weight assignment handed to the converter as exact names).
Debug ops (``Assert`` from onnx-tf's Gather at opset >= 11) are stripped: TFJS has no kernel for them.
Runs in-process through ``contracts.tf_environment.import_tensorflowjs`` (the same converter also runs as a
subprocess: ``python -m converters.tfjs_entry``). The TFJS io spec is read from ``model.json``'s ``signature``:
the input tensor name and layout, and for each model-signature output the TFJS output tensor name
(e.g. ``Identity:0``) that the SavedModel's serving key became.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from contracts.errors import UserError
from contracts.io_spec import IoSpec, io_spec_from_tfjs_signature
from contracts.signature import output_names, output_shapes

from . import tfjs_mixed
from .context import StageContext, project_files
from .js_module import write_js_module
from .reproducible import canonical_model_json

CAST_NOTE = "was auto converted to the type int32"
# onnx-tf guards Gather (opset >= 11) with an index-bounds Assert; TFJS has no Assert kernel, so the converter
# strips these debug ops (strip_debug_ops). They compute nothing: outputs are unchanged, only the runtime check
# goes (validation then compares TFJS against PyTorch).
DEBUG_OPS = ("Assert", "CheckNumerics", "Print")

NAME = "tfjs"
OUTPUT = "tfjs"
PACKAGES = ("tensorflowjs", "tensorflow", "tensorflow-hub", "tf_keras")


def code_files(ctx: StageContext) -> list[Path]:
    return project_files("converters/stage_tfjs.py", "contracts/tf_environment.py", "contracts/io_spec.py",
                         "contracts/signature.py", "converters/js_module.py", "js/nanodet.mjs",
                         "js/nanodet_decode.mjs", "js/nanodet_warp.mjs", "converters/reproducible.py",
                         "converters/weight_types.py", "converters/tfjs_mixed.py")


def key_options(ctx: StageContext) -> dict:
    return {"quantize": ctx.options.quantize, **tfjs_mixed.key_options(ctx)}


def quantization_map(quantize: str | None):
    return {quantize: True} if quantize else None   # True: every weight falls through to this dtype


def tfjs_io_spec(model_json: Path, saved_model_spec: dict, cfg) -> IoSpec:
    """The SavedModel io spec in TFJS tensor names, read from model.json's signature (a signature that does not
    say them is the converter's fault, not the user's: RuntimeError)."""
    try:
        saved_model = IoSpec.from_dict(saved_model_spec, "SavedModel io spec", output_names(cfg.strides))
        return io_spec_from_tfjs_signature(model_json, output_shapes(cfg), saved_model)
    except UserError as exc:
        raise RuntimeError(str(exc)) from None


def convert(src: Path, dst: Path, ctx: StageContext) -> dict:
    if tfjs_mixed.is_mixed(ctx.options):
        facts = tfjs_mixed.write_mixed(src, dst, ctx, write_tfjs)
    else:
        facts = write_tfjs(src, dst, ctx, quantization_map(ctx.options.quantize))
    return {"quantize": ctx.options.quantize or "float32", **facts}


def write_tfjs(src: Path, dst: Path, ctx: StageContext, dtype_map) -> dict:
    """Convert the SavedModel ``src`` into ``dst`` with tensorflowjs' ``quantization_dtype_map`` ``dtype_map``,
    then the canonical model.json, the io spec and the JS module; returns the stage's facts."""
    from contracts.stderr_filter import filtered_stderr
    from contracts.tf_environment import RUNTIME_NOISE, import_tensorflowjs
    import_tensorflowjs()
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

    chatter = io.StringIO()   # the converter prints one line per int64 weight it stores as int32
    with contextlib.redirect_stdout(chatter), filtered_stderr(RUNTIME_NOISE, label=f"stage {NAME}"):
        convert_tf_saved_model(str(src), str(dst), signature_def="serving_default", saved_model_tags="serve",
                               quantization_dtype_map=dtype_map,
                               strip_debug_ops=True)
    lines = chatter.getvalue().splitlines()
    cast = [line.split()[1] for line in lines if CAST_NOTE in line]
    for line in lines:
        if line.strip() and CAST_NOTE not in line:
            ctx.log(f"      {line}")
    if cast:
        ctx.log(f"      tensorflowjs stored {len(cast)} int64 constant(s) as int32 (see the int64 audit)")
    model_json = dst / "model.json"
    if not model_json.is_file():
        raise RuntimeError("tensorflowjs wrote no model.json")
    canonical_model_json(model_json)   # node attributes in sorted order: reproducible bytes
    sm_spec = ctx.extras.get("io_spec:saved_model")
    if not sm_spec:
        raise RuntimeError("no SavedModel io spec to translate (stage saved_model did not record one)")
    io_spec = tfjs_io_spec(model_json, sm_spec, ctx.cfg)
    write_js_module(dst, ctx.cfg, io_spec)  # nanodet.mjs: the JS detection module shipped beside model.json
    asserts = count_ops(src, DEBUG_OPS)
    if asserts:
        ctx.log(f"      stripped {asserts} debug op(s) {'/'.join(DEBUG_OPS)} (TFJS has no kernel for them)")
    return {"io_spec": io_spec.to_dict(), "int64_weights_as_int32": len(cast), "debug_ops_stripped": asserts}


def count_ops(saved_model_dir: Path, op_types) -> int:
    """How many nodes of these TF op types the SavedModel's graph (and its functions) holds."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    n = 0
    for meta in sm.meta_graphs:
        n += sum(node.op in op_types for node in meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            n += sum(node.op in op_types for node in fn.node_def)
    return n
