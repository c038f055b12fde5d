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


def floor_of(module: str) -> int | None:
    """The floor of a dotted module name: its package's (None: not the toolkit's, e.g. numpy)."""
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


def test_the_command_lines_are_all_on_the_top_floor():
    """No module below ``commands`` parses a user's options (argparse): every command line is in commands/ (the
    internal ``python -m`` workers that the converters and the localiser start take positional paths only)."""
    below = [path.relative_to(PROJECT_ROOT).as_posix() for folder in FLOORS[:-1]
             for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
             if any(isinstance(node, (ast.Import, ast.ImportFrom)) and "argparse" in
                    [node.module if isinstance(node, ast.ImportFrom) else a.name for a in node.names]
                    for node in ast.walk(ast.parse(path.read_text())))]
    assert below == []


def test_an_upward_import_is_found_at_any_depth(tmp_path):
    """The walk itself: an upward import at module level, one inside a function, a relative one that climbs out of
    its package into the commands, and one that names a command module through ``from package import module``."""
    files = {
        "contracts/__init__.py": "",
        "contracts/ok.py": "import json\nfrom .errors import UserError\n",
        "contracts/bad.py": "def f():\n    from nanodet_ref.config import load_config\n",
        "nanodet_ref/__init__.py": "",
        "nanodet_ref/model.py": "from ..commands import reference\n",
        "commands/__init__.py": "",
        "commands/reference.py": "from validation.coco_ap import CocoAnnotations\n",   # the top floor: allowed
        "converters/__init__.py": "",
        "converters/js_module.py": "from validation.runners import base\n",
        "validation/__init__.py": "",
        "validation/api.py": "from commands import validate\nfrom converters import js_module\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert upward_imports(tmp_path) == [
        "contracts/bad.py:2 (contracts) imports nanodet_ref.config.load_config (nanodet_ref)",
        "nanodet_ref/model.py:1 (nanodet_ref) imports commands.reference (commands)",
        "converters/js_module.py:1 (converters) imports validation.runners.base (validation)",
        "validation/api.py:1 (validation) imports commands.validate (commands)",
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
