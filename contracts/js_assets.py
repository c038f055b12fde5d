"""Where the JavaScript half of the toolkit is: the Node runner and module (``js/*.mjs``, ``package.json``, the
npm lock, ``demo/``) and the npm packages they import.

In a work tree that is ``js/`` of the project (``make js`` installs ``js/node_modules``). An installed toolkit (pip)
carries the same files as data under ``<prefix>/share/nanodet-tfjs/js``; that copy stays as installed, and the
first command that needs Node copies it into a cache folder (``~/.cache/nanodet-tfjs/js-<lock digest>``, under
``XDG_CACHE_HOME`` where set) and runs ``npm ci`` there from the packaged lock, naming the folder. A new lock gets
a new folder, so an upgrade never runs against old packages.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .atomic import staged_output
from .errors import UserError
from .node_runtime import NODE_MINIMUM_TEXT
from .paths import PROJECT_ROOT, in_work_tree, installed_data_dir

LOCK = "package-lock.json"


def packaged_js() -> Path:
    """The JS files as shipped: ``js/`` of the work tree, else the installed copy."""
    return PROJECT_ROOT / "js" if in_work_tree() else installed_data_dir() / "js"


def cache_js_dir() -> Path:
    """The folder an installed toolkit runs Node in: the packaged files plus their npm packages."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256((packaged_js() / LOCK).read_bytes()).hexdigest()[:12]
    return cache / "nanodet-tfjs" / f"js-{digest}"


def js_dir() -> Path:
    """The folder Node runs the toolkit's scripts in (their ``node_modules`` beside them). Installed: prepared on
    first use (``prepare_js_dir``); in a work tree: ``js/`` as it is (``make js`` installs its packages)."""
    if in_work_tree():
        return PROJECT_ROOT / "js"
    target = cache_js_dir()
    if not (target / "node_modules" / ".installed").is_file():
        prepare_js_dir(packaged_js(), target)
    return target


def prepare_js_dir(source: Path, target: Path) -> None:
    """Copy the packaged JS files to ``target`` and install their npm packages there (``npm ci``), all in a temp
    folder that becomes ``target`` only when complete."""
    if not (source / LOCK).is_file():
        raise UserError(f"{source}: the toolkit's JS files are missing ({LOCK}): reinstall nanodet-tfjs")
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"npm (Node.js) not found on PATH: install Node.js >= {NODE_MINIMUM_TEXT} (the TFJS checks run in "
                        "Node)")
    print(f"installing the toolkit's npm packages into {target} (first use; npm ci from the packaged lock)",
          file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)       # an earlier attempt without its .installed mark: not a finished folder
    with staged_output(target) as tmp:
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("node_modules"))
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{target}: npm ci failed: {(proc.stderr.strip() or proc.stdout.strip())[-800:]}")
        (tmp / "node_modules").mkdir(exist_ok=True)      # npm makes none for a lock without packages
        (tmp / "node_modules" / ".installed").touch()


def install_hint() -> str:
    """How a user gets the npm packages: ``make js`` in a work tree; an installed toolkit installs them itself."""
    return "run `make js`" if in_work_tree() else f"delete {cache_js_dir()} and run the command again"
