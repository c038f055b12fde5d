"""SavedModel backend ``onnx_tf``: ONNX -> TF SavedModel with onnx-tf 1.10 (the route the peer TFJS model took).

``to_saved_model(onnx_path, out_dir, cfg) -> io spec``. onnx-tf keeps the ONNX layout (NCHW input) and names the
``serving_default`` signature's input and outputs after the ONNX graph's, so the io spec is read back from the
SavedModel's signature (``saved_model.pb``, parsed without loading the model). Needs the import substitutes of
``contracts.tf_environment``. Also a subprocess entry: ``python -m converters.backend_onnx_tf MODEL.onnx OUT_DIR``.
"""
from __future__ import annotations

import sys
from pathlib import Path

SIGNATURE = "serving_default"


def read_signature(saved_model_dir: Path, signature: str = SIGNATURE) -> dict:
    """{'inputs': {key: (tensor name, shape)}, 'outputs': {...}} of one SavedModel signature, from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    for meta in sm.meta_graphs:
        if signature in meta.signature_def:
            sig = meta.signature_def[signature]

            def table(m):
                return {k: (v.name, [int(d.size) for d in v.tensor_shape.dim]) for k, v in m.items()}
            return {"inputs": table(sig.inputs), "outputs": table(sig.outputs)}
    raise RuntimeError(f"{saved_model_dir}: SavedModel has no '{signature}' signature")


def io_spec_from_signature(saved_model_dir: Path, onnx_model, layout: str = "NCHW") -> dict:
    """Map the ONNX graph's input and outputs onto the SavedModel's serving signature keys (they keep the ONNX
    names); the stage checks them against the model signature."""
    sig = read_signature(saved_model_dir)
    if len(sig["inputs"]) != 1:
        raise RuntimeError(f"SavedModel signature has {len(sig['inputs'])} inputs, expected 1")
    in_key, (_, in_shape) = next(iter(sig["inputs"].items()))
    outputs = {}
    for name in (o.name for o in onnx_model.graph.output):
        if name not in sig["outputs"]:
            raise RuntimeError(f"SavedModel signature lacks output '{name}' (has {sorted(sig['outputs'])})")
        outputs[name] = name
    initializers = {t.name for t in onnx_model.graph.initializer}
    onnx_input = next(i.name for i in onnx_model.graph.input if i.name not in initializers)
    return {"input": {"name": in_key, "layout": layout, "shape": in_shape, "onnx_name": onnx_input},
            "outputs": outputs, "signature": SIGNATURE}


def to_saved_model(onnx_path: Path, out_dir: Path, cfg) -> dict:
    from contracts import tf_environment
    tf_environment.install()
    tf_environment.import_tensorflow()
    import onnx
    from onnx_tf.backend import prepare

    model = onnx.load(str(onnx_path))
    rep = prepare(model, device="CPU")
    rep.export_graph(str(out_dir))
    return io_spec_from_signature(Path(out_dir), model)


def main(argv=None) -> int:
    import json
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3:
        print("usage: python -m converters.backend_onnx_tf MODEL.onnx OUT_DIR CONFIG", file=sys.stderr)
        return 2
    from nanodet_ref.config import load_config
    spec = to_saved_model(Path(argv[0]), Path(argv[1]), load_config(argv[2]))
    print(json.dumps(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
