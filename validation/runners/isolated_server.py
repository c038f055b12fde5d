"""A local HTTP server whose pages are cross-origin isolated, for the browser runs and ``make demo``.

Threads in a page need ``SharedArrayBuffer``, which a browser gives only to a cross-origin isolated page: one
served with ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``
(every response also says ``Cross-Origin-Resource-Policy: same-origin``, so that the page may load it). Without
them tfjs-backend-wasm loads its non-threaded build and onnxruntime-web falls back to one thread.

The server answers only under the prefixes it is given (``routes``: URL prefix -> folder; nothing else of the
disk is reachable, ``..`` is refused) and accepts ``PUT`` of a plain file name under one upload prefix (the
browser runner's outputs). It binds 127.0.0.1 on a free port and runs in a thread of this process.
"""
from __future__ import annotations

import functools
import http.server
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
MAX_UPLOAD = 1 << 30


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """Serves ``routes`` with the isolation headers; ``PUT`` under ``upload_prefix`` writes into ``upload_dir``."""

    routes: dict[str, Path] = {}
    upload_prefix: str | None = None
    upload_dir: Path | None = None
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                      ".json": "application/json", ".onnx": "application/octet-stream"}

    def end_headers(self):
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def translate_path(self, path):
        """The file a URL names under one of the routes; an address outside them names nothing (404)."""
        clean = unquote(urlsplit(path).path)
        for prefix, folder in self.routes.items():
            if clean.startswith(prefix):
                rest = Path(clean[len(prefix):])
                if ".." in rest.parts or rest.is_absolute():
                    break
                return str(Path(folder) / rest)
        return str(Path(os.devnull) / "absent")

    def do_PUT(self):
        clean = unquote(urlsplit(self.path).path)
        name = clean[len(self.upload_prefix):] if self.upload_prefix and clean.startswith(self.upload_prefix) else ""
        length = int(self.headers.get("Content-Length") or -1)
        if not name or "/" in name or name.startswith(".") or self.upload_dir is None:
            self.send_error(403, "uploads go to the upload prefix, as a plain file name")
            return
        if not 0 <= length <= MAX_UPLOAD:
            self.send_error(411 if length < 0 else 413)
            return
        target = Path(self.upload_dir) / name
        part = target.with_name(target.name + ".part")
        with open(part, "wb") as fh:
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                fh.write(chunk)
                remaining -= len(chunk)
        if remaining:
            part.unlink(missing_ok=True)
            self.send_error(400, "body shorter than its Content-Length")
            return
        part.replace(target)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def make_server(routes: dict[str, Path], upload_prefix: str | None = None, upload_dir: Path | None = None,
                port: int = 0) -> http.server.ThreadingHTTPServer:
    """The server object (not started): ``routes`` URL prefix -> folder (the dict itself: entries added later are
    served too), uploads as in the module's docstring."""
    handler = type("Routes", (IsolatedHandler,), {"routes": routes, "upload_prefix": upload_prefix,
                                                  "upload_dir": upload_dir})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=os.devnull))
    server.daemon_threads = True
    return server


@contextmanager
def serve(routes: dict[str, Path], upload_prefix: str | None = None, upload_dir: Path | None = None):
    """Serve in a background thread for the ``with`` block; yields the base URL (``http://127.0.0.1:PORT``)."""
    server = make_server(routes, upload_prefix, upload_dir)
    thread = threading.Thread(target=server.serve_forever, name="isolated-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
