"""The entry of ``--backend tf_nhwc``: an ONNX file -> a checked TF SavedModel with NHWC input, and its io spec.

``to_saved_model(onnx_path, out_dir, cfg)`` traces the translation (``translator``) as a ``tf.Module`` whose
``serving_default`` signature takes the ONNX graph's input (``input``; ``data`` in upstream's layout) as
[N, H, W, C] float32 and returns the ONNX graph's outputs by name ([1, HW, C] for NanoDet), saves it straight into
``out_dir``, refuses a graph that would abort TensorFlow (``converters.tf_graph_hazards``, before anything runs it)
and checks it against onnxruntime (``self_check``).
No staging of its own: ``out_dir`` is the stage's output inside the build folder that the pipeline swaps in whole
(``converters.staging``) and discards whole when this raises, so a failed check never reaches an artifact folder.
"""
from __future__ import annotations

from pathlib import Path

from contracts.errors import UserError
from contracts.tf_environment import import_tensorflow

from ..tf_graph_hazards import refuse_hazards
from .self_check import verify_against_onnxruntime
from .translator import Translator

SIGNATURE = "serving_default"


def _serving_module(tf, translator: Translator, nhwc_shape: list[int], input_name: str):
    """A tf.Module whose ``serve`` runs ``translator`` on a float32 input ``input_name`` of ``nhwc_shape``."""

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(nhwc_shape, tf.float32, name=input_name)], autograph=False)
        def serve(self, x):
            return translator.run(tf, x)

    return Model()


def build_module(onnx_path: Path):
    """(tf.Module with ``serve`` [1,H,W,3] -> {output name: [1,HW,C]}, input shape NCHW, output names); the
    module's input has the ONNX input's name (``input_name(module)``)."""
    import onnx
    tf = import_tensorflow()

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: ONNX file not found")
    model = onnx.load(str(onnx_path))
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserError(f"{onnx_path}: expected one graph input, found {[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims):
        raise UserError(f"{onnx_path}: input '{inputs[0].name}' must be a static [N, C, H, W] tensor, got {dims}")
    module = _serving_module(tf, Translator(model, str(onnx_path)), [dims[0], dims[2], dims[3], dims[1]],
                             inputs[0].name)
    module.serve.get_concrete_function()  # trace now: an unsupported op fails here, before anything is written
    return module, dims, [o.name for o in model.graph.output]


def to_saved_model(onnx_path: Path, out_dir: Path, cfg=None) -> dict:
    """Convert ``onnx_path`` to a SavedModel at ``out_dir`` (created if absent); return its io spec (input NHWC)."""
    tf = import_tensorflow()

    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    module, dims, names = build_module(onnx_path)
    if cfg is not None:
        from contracts.signature import LAYOUTS, export_output_names
        wanted = [export_output_names(cfg, layout) for layout in LAYOUTS]
        if not any(set(w) <= set(names) for w in wanted):
            raise UserError(f"{onnx_path}: graph outputs {names} are neither layout's signature outputs "
                            f"({' or '.join(str(w) for w in wanted)})")
    tf.saved_model.save(module, str(out_dir), signatures={SIGNATURE: module.serve.get_concrete_function()})
    refuse_hazards(out_dir, "backend tf_nhwc")  # before the check below runs the graph
    verify_against_onnxruntime(out_dir, onnx_path, dims, names, SIGNATURE)
    return {"input": {"name": input_name(module), "layout": "NHWC", "shape": [dims[0], dims[2], dims[3], dims[1]]},
            "outputs": {n: n for n in names}, "signature": SIGNATURE}


def input_name(module) -> str:
    """The name of the serving function's one input (the ONNX graph's input name)."""
    (spec,) = module.serve.input_signature
    return spec.name
