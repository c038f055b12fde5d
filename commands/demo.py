"""``python -m commands demo --model m-416`` (``make demo``): serve the demo page (js/demo/) cross-origin isolated
and print its URL.

The page is served with ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy:
require-corp`` (``validation.runners.isolated_server``), so that the browser gives it SharedArrayBuffer and
tfjs-backend-wasm may run threads; the page shows the backend and the thread count it got. Only two folders are
served: the toolkit's js/ (the page, the TFJS packages) at ``/js/`` and the artifact's tfjs/ folder at ``/model/``.
It runs until Ctrl-C. Exit 2 where the artifact is not converted or the port is taken.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.errors import UserError, run_main
from contracts.js_assets import js_dir
from contracts.paths import artifacts_dir


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands demo", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="m-416", help="the artifact artifacts/<model>/ (default m-416)")
    p.add_argument("--artifact", metavar="DIR", help="an artifact folder (holding tfjs/) instead of --model's")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free one)")
    p.add_argument("--backend", choices=("wasm", "webgl", "cpu"), default="wasm", help="the page's backend")
    p.add_argument("--threads", type=int, default=0,
                   help="wasm threads the page asks for (default 0: every logical core of the browser's machine)")
    return p


def demo_url(base: str, backend: str, threads: int) -> str:
    url = f"{base}/js/demo/index.html?model=/model/model.json&backend={backend}"
    return url + (f"&threads={threads}" if threads else "")


def run(args) -> int:
    from validation.runners.isolated_server import make_server

    folder = Path(args.artifact) if args.artifact else artifacts_dir() / args.model
    model = folder / "tfjs" / "model.json"
    if not model.is_file():
        raise UserError(f"{model}: not found: convert first (python -m commands convert --model {args.model}) "
                        f"or give --artifact DIR")
    if not (js_dir() / "node_modules" / "@tensorflow" / "tfjs-core").is_dir():
        raise UserError(f"{js_dir() / 'node_modules'}: TFJS npm packages missing: run `make js`")
    try:
        server = make_server({"/js/": js_dir(), "/model/": model.parent}, port=args.port)
    except OSError as exc:
        raise UserError(f"--port {args.port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})") from None
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"demo of {folder}: open {demo_url(base, args.backend, args.threads)}", flush=True)
    print("(served cross-origin isolated: COOP same-origin, COEP require-corp; Ctrl-C stops)", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def parse_and_run(argv=None) -> int:
    return run(parser().parse_args(argv))


def main(argv=None) -> int:
    return run_main(parse_and_run, argv)
