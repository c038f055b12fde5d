"""The top floor: the toolkit's command lines, one entry ``python -m commands <command> ...`` (installed as
``nanodet-tfjs``). Each command is a module here with ``main(argv) -> exit code``; they parse options, call the
floors below (converters, validation, nanodet_ref) and print to the console. No lower floor imports this package.

The table below is the one list of commands (the dispatcher ``commands.__main__`` reads it).
"""
from __future__ import annotations

# command name -> (module in this package, first arguments it is called with, one-line help)
COMMANDS = {
    "convert": ("convert", ["convert"], "PyTorch -> ONNX -> simplified ONNX -> SavedModel -> TFJS, audit, validate"),
    "validate": ("validate", ["validate"], "validate an artifact folder against PyTorch (an ad-hoc run)"),
    "accept": ("validate", ["accept"], "make a validation the accepted figures that check compares with"),
    "check": ("validate", ["check"], "regression check of converted artifacts (no re-conversion)"),
    "foreign": ("validate", ["foreign"], "validate a TFJS model the toolkit did not make"),
    "bench": ("bench", [], "size, graph ops, latency and AP of every artifact variant"),
    "audit": ("audit", [], "int64 values that TFJS narrows to int32, and what they change"),
    "js-check": ("js_check", [], "the JS module beside tfjs/model.json against the reference, in Node"),
    "reference": ("reference", [], "the PyTorch reference: detect on images, or COCO AP (detect|eval)"),
    "pruning-probe": ("pruning_probe", [], "how much AP removing convolution channels would cost"),
    "hosting-probe": ("hosting_probe", [], "wasm in Chromium: page main thread vs Web Worker, interleaved"),
    "precision": ("precision", [], "each runtime's float32 error against the model computed in float64"),
    "weights": ("weights", [], "an artifact's TFJS weight names (what --keep matches), types and layers"),
    "zoo": ("zoo", [], "every config of a folder (default: upstream's) converted and validated, one table"),
    "demo": ("demo", [], "serve the demo page cross-origin isolated (threads allowed) and print its URL"),
}
