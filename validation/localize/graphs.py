"""One ONNX graph made ready for localisation: read, instrumented, run by onnxruntime, mapped onto PyTorch.

``TappedGraph.prepare(path, work_dir, images, calls, output_names)`` does, once per graph (``model.onnx``,
``model.sim.onnx``): :class:`~.onnx_taps.GraphInfo`, the instrumented copy in ``work_dir``, onnxruntime's value
of every tap on every image, and the PyTorch value of every tensor the exporter's scopes map (``mapping``),
plus the input image for the graph input and PyTorch's outputs for the graph outputs of the same names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .first_divergence import Reference
from .mapping import map_calls
from .onnx_taps import GraphInfo, instrument, run_onnxruntime, save, with_shapes


@dataclass
class TappedGraph:
    path: Path
    info: GraphInfo
    taps_path: Path                                  # the instrumented copy
    taps: dict                                       # tap name -> tensor
    onnxruntime: list = field(default_factory=list)  # per image: tensor -> value
    reference: Reference | None = None

    @classmethod
    def prepare(cls, path: Path, work_dir: Path, images: np.ndarray, calls: list, output_names) -> "TappedGraph":
        import onnx
        model = onnx.load(str(path))
        info = GraphInfo.read(model)
        tapped, taps = instrument(model, info.tapped(), info.elem_type)
        taps_path = save(tapped, Path(work_dir) / f"{Path(path).stem}.taps.onnx")
        graph = cls(Path(path), info, taps_path, taps)
        graph.onnxruntime = run_onnxruntime(taps_path, images, taps)
        save(with_shapes(tapped, graph.tap_shapes()), taps_path)    # the converters need the outputs' shapes
        graph.reference = torch_reference(info, calls, graph.onnxruntime, images, output_names)
        return graph

    def tap_shapes(self) -> dict[str, tuple]:
        """tap name -> the tensor's shape (ONNX layout, from onnxruntime on the first image); floats only."""
        first = self.onnxruntime[0]
        return {tap: tuple(first[t].shape) for tap, t in self.taps.items() if t in first}


def torch_reference(info: GraphInfo, calls: list, ort_values: list, images: np.ndarray, output_names
                    ) -> Reference:
    """PyTorch's value per mapped tensor and image (``calls``: one list of module calls per image)."""
    shapes = {t: v.shape for t, v in ort_values[0].items()}
    mapping = map_calls(info, calls[0], shapes)
    per_image = []
    for i, image_calls in enumerate(calls):
        values = mapping.values(image_calls)
        values[info.input_name] = np.ascontiguousarray(images[i:i + 1], np.float32)
        root = image_calls[-1]          # the model's own call finishes last
        if not root.qualname and output_names:
            for name, value in zip(output_names, root.values):
                if name in info.outputs and value.dtype.kind == "f" and \
                        tuple(value.shape) == tuple(shapes.get(name, ())):
                    values[name] = value
        per_image.append(values)
    labels = dict(mapping.labels)
    labels.update({n: f"output {n}" for n in info.outputs if n in per_image[0] and n not in labels})
    labels[info.input_name] = "input image"
    return Reference(per_image, labels)
