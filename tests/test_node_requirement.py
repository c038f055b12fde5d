"""Node.js >= 20.9 is required exactly where a step runs the TFJS model in Node (validation, the int64 audit),
and every message, the README, make js and js/package.json say the same minimum."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from contracts.node_runtime import NODE_MINIMUM, NODE_MINIMUM_TEXT
from contracts.paths import PROJECT_ROOT


def convert(tmp_path, *args, path: str):
    """The converter with a bad checkpoint (refused in seconds, before anything is built) and a given PATH."""
    notes = tmp_path / "notes.pth"
    notes.write_text("not weights\n")
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "commands", "convert", "--model", "m-416", "--checkpoint",
                           str(notes), "--out", str(tmp_path / "out"), *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def no_node(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return str(empty)


@pytest.fixture
def old_node(tmp_path):
    """A PATH whose ``node`` is an executable answering like Node 18 does."""
    folder = tmp_path / "old-bin"
    folder.mkdir()
    node = folder / "node"
    node.write_text("#!/bin/sh\necho v18.19.0\n")
    node.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def test_converting_alone_needs_no_node(tmp_path, no_node):
    r = convert(tmp_path, "--no-validate", "--no-audit", path=no_node)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'notes.pth'}: not a PyTorch checkpoint")


@pytest.mark.parametrize("skip", [[], ["--no-validate"], ["--no-audit"]])
def test_validation_or_audit_need_node_and_say_which(tmp_path, no_node, skip):
    r = convert(tmp_path, *skip, path=no_node)
    assert r.returncode == 2
    needs = {(): "validation and the int64 audit run", ("--no-validate",): "the int64 audit run",
             ("--no-audit",): "validation run"}[tuple(skip)]
    assert r.stderr.strip() == (f"error: node (Node.js) not found on PATH: install Node.js >= 20.9 ({needs} the "
                                "TFJS model in Node; --no-validate --no-audit converts without it)")
    assert not (tmp_path / "out").exists()


def test_an_old_node_is_refused_before_converting(tmp_path, old_node):
    r = convert(tmp_path, path=old_node)
    assert r.returncode == 2
    assert re.fullmatch(r"error: \S+/node is Node\.js v18\.19\.0: Node\.js >= 20\.9 is needed \(validation and "
                        r"the int64 audit run the TFJS model in Node; --no-validate --no-audit converts without "
                        r"it\)", r.stderr.strip()), r.stderr


def test_the_tfjs_runner_refuses_an_old_node(old_node, monkeypatch):
    from contracts.errors import UserError
    from validation.runners.tfjs_node import node_executable

    monkeypatch.setenv("PATH", old_node)
    monkeypatch.delenv("NANODET_NODE", raising=False)
    with pytest.raises(UserError, match=r"is Node\.js v18\.19\.0: Node\.js >= 20\.9 is needed"):
        node_executable()


def test_one_minimum_everywhere():
    """The code's minimum is the one the lock needs (sharp), package.json's engines, the README and make js."""
    lock = json.loads((PROJECT_ROOT / "js" / "package-lock.json").read_text())
    needed = set()
    for entry in lock["packages"].values():
        found = re.fullmatch(r">=(\d+)\.(\d+)(\.\d+)?", (entry.get("engines") or {}).get("node", ""))
        if found:
            needed.add((int(found.group(1)), int(found.group(2))))
    assert max(needed) == NODE_MINIMUM
    assert json.loads((PROJECT_ROOT / "js" / "package.json").read_text())["engines"]["node"] == \
        f">={NODE_MINIMUM_TEXT}.0"
    assert lock["packages"][""]["engines"]["node"] == f">={NODE_MINIMUM_TEXT}.0"
    texts = {name: (PROJECT_ROOT / name).read_text() for name in ("README.md", "Makefile")}
    for name, text in texts.items():
        said = set(re.findall(r"Node(?:\.js)? >= ?(\d+(?:\.\d+)?)", text))
        assert said == {NODE_MINIMUM_TEXT}, (name, said)
    code = [p for d in ("contracts", "converters", "validation", "nanodet_ref", "commands") for p in (PROJECT_ROOT / d).rglob("*.py")]
    for path in code:
        said = set(re.findall(r"Node(?:\.js)? >= ?(\d+(?:\.\d+)?)", path.read_text()))
        assert said <= {NODE_MINIMUM_TEXT}, (path.name, said)
