"""``python -m commands js-check``: the JS module shipped beside tfjs/model.json, checked in Node against the PyTorch
reference (decode parity and end-to-end AP; ``validation.js_module_check``). Prints the result as JSON; exit 0
when it holds, 1 when not, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from contracts.errors import UserError
from contracts.paths import artifacts_dir
from nanodet_ref.config import load_config
from nanodet_ref.input_size import parse_input_size, with_input_size
from validation.js_module_check import check_js_module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m commands js-check", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="m-416", help="model name (default m-416)")
    ap.add_argument("--config", help="a config file instead of --model")
    ap.add_argument("--artifact", help="artifact folder holding tfjs/ (default artifacts/<model>)")
    ap.add_argument("--images", help="image folder (default: the shared COCO set)")
    ap.add_argument("--annotations", help="COCO annotations for --images")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--backend", default="wasm", choices=("wasm", "cpu"))
    ap.add_argument("--input-size", metavar="W,H", help="the model converted at this input size (<model>-WxH)")
    args = ap.parse_args(argv)
    try:
        cfg = with_input_size(load_config(args.config or args.model), parse_input_size(args.input_size))
        artifact = Path(args.artifact) if args.artifact else artifacts_dir() / cfg.name
        result = check_js_module(artifact, cfg, args.images, args.annotations, args.limit, args.backend)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1

