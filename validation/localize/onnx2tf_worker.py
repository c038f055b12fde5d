"""Child process of ``tf_taps.convert`` for ``--backend onnx2tf``: onnx2tf on an instrumented graph, run exactly
as ``converters.backend_onnx2tf`` runs it (its calibration file in the working folder, onnx2tf on a copy of the
graph, stopped after the SavedModel), without the backend's output matching and wrapping: the raw SavedModel
keeps every tap as an output ``output_<k>``.

    python -m validation.localize.onnx2tf_worker TAPS.onnx OUT_SAVED_MODEL_DIR    (run in a scratch folder)
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from converters.backend_onnx2tf import _run_onnx2tf, _write_calibration

    if len(argv) != 2:
        print("usage: python -m validation.localize.onnx2tf_worker TAPS.onnx OUT_DIR", file=sys.stderr)
        return 2
    cwd = Path.cwd()
    _write_calibration(cwd)
    copy = cwd / "input.onnx"            # onnx2tf writes over its input
    shutil.copyfile(argv[0], copy)
    _run_onnx2tf(copy, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
