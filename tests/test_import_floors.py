"""The floors of the toolkit, lowest first: contracts -> nanodet_ref -> patches -> converters -> validation -> the
command lines. A module may import its own floor and the ones below, never one above: every import of every module
is read (``ast``: module-level and inside functions, absolute and relative), nothing is run. ``contracts`` imports
neither torch nor TensorFlow."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from contracts.paths import PROJECT_ROOT

FLOORS = ("contracts", "nanodet_ref", "patches", "converters", "validation", "commands")
# The command lines are the top floor. Until they move into commands/ they stay where they are and are listed here
# (a module, or a package with everything in it): convert, validate/accept/check/foreign, bench, js-check, the
# reference's detect/eval (and its ``python -m nanodet_ref``), and the pruning probe (whose main reuses the
# reference's command-line helpers).
TOP_FLOOR = ("converters.cli", "validation.cli", "validation.bench", "validation.js_module_check", "nanodet_ref.cli",
             "nanodet_ref.__main__", "validation.pruning_probe")


def floor_of(module: str) -> int | None:
    """The floor of a dotted module name (None: not the toolkit's, e.g. numpy)."""
    if any(module == top or module.startswith(top + ".") for top in TOP_FLOOR):
        return len(FLOORS) - 1
    package = module.split(".")[0]
    return FLOORS.index(package) if package in FLOORS else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file; ``from X import Y`` counts as X.Y (Y may be a
    submodule, as in ``from validation import cli``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def upward_imports(root: Path) -> list[str]:
    """'<file>:<line> (<floor>) imports <module> (<higher floor>)' for every import that runs up the floors."""
    problems = []
    for folder in FLOORS:
        for path in sorted((root / folder).rglob("*.py")):
            own = floor_of(module_name(path, root))
            for line, target in imported_modules(path, root):
                theirs = floor_of(target)
                if theirs is not None and theirs > own:
                    problems.append(f"{path.relative_to(root).as_posix()}:{line} ({FLOORS[own]}) imports {target} "
                                    f"({FLOORS[theirs]})")
    return problems


def test_no_module_imports_a_higher_floor():
    assert upward_imports(PROJECT_ROOT) == []


def test_the_top_floor_list_names_modules_that_exist():
    """A command line moved into commands/ leaves the list too (else the list would hide a wrong import)."""
    for top in TOP_FLOOR:
        base = PROJECT_ROOT.joinpath(*top.split("."))
        assert base.with_suffix(".py").is_file() or (base / "__init__.py").is_file(), top


def test_an_upward_import_is_found_at_any_depth(tmp_path):
    """The walk itself: an upward import at module level, one inside a function, a relative one that climbs into
    a command line, and one that names a command-line module through ``from package import module``."""
    files = {
        "contracts/__init__.py": "",
        "contracts/ok.py": "import json\nfrom .errors import UserError\n",
        "contracts/bad.py": "def f():\n    from nanodet_ref.config import load_config\n",
        "nanodet_ref/__init__.py": "",
        "nanodet_ref/cli.py": "from validation.coco_ap import CocoAnnotations\n",   # a command line: allowed
        "nanodet_ref/model.py": "from . import cli\n",
        "converters/__init__.py": "",
        "converters/js_module.py": "from validation.runners import base\n",
        "validation/__init__.py": "",
        "validation/api.py": "from validation import cli\nfrom converters import js_module\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert upward_imports(tmp_path) == [
        "contracts/bad.py:2 (contracts) imports nanodet_ref.config.load_config (nanodet_ref)",
        "nanodet_ref/model.py:1 (nanodet_ref) imports nanodet_ref.cli (commands)",
        "converters/js_module.py:1 (converters) imports validation.runners.base (validation)",
        "validation/api.py:1 (validation) imports validation.cli (commands)",
    ]


def test_contracts_import_neither_torch_nor_tensorflow():
    """Every module of the lowest floor imports without torch, TensorFlow, onnx or OpenCV (numpy only)."""
    code = ("import importlib, pkgutil, sys, contracts\n"
            "for m in pkgutil.iter_modules(contracts.__path__):\n"
            "    importlib.import_module('contracts.' + m.name)\n"
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'tensorflow', 'onnx', 'onnxruntime', "
            "'cv2', 'nanodet_ref', 'patches', 'converters', 'validation'}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
