"""The stderr noise filter (contracts/stderr_filter.py, around TensorFlow's imports and runs).

Each test runs a small Python process that enters the block, so that what reaches that process's real stderr
(captured here) is what a user's terminal would show, including when the process dies inside the block.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import pytest

from contracts.paths import PROJECT_ROOT
from contracts.stderr_filter import DIED

NOISE = "E0000 00:00:1 cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error"   # in RUNTIME_NOISE

HEAD = ("import os, subprocess, sys\n"
        "from contracts.stderr_filter import filtered_stderr\nfrom contracts.tf_environment import RUNTIME_NOISE\n")


def run(body: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HEAD + body], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, **kw)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("nested", [False, True])
def test_a_process_that_aborts_inside_the_block_shows_its_last_line_and_one_error_line(nested):
    """os.abort() inside the block (what TensorFlow's failed Check does): the last line written before it, from
    C level, reaches the real stderr, then one line naming the block; noise is still dropped."""
    inner = ("    with filtered_stderr(RUNTIME_NOISE, label='importing TensorFlow'):\n"
             "        os.write(2, b'F0000 tensor_format.h:428] Check failed: index >= 0\\n')\n"
             "        os.abort()\n") if nested else (
             "    os.write(2, b'F0000 tensor_format.h:428] Check failed: index >= 0\\n')\n"
             "    os.abort()\n")
    proc = run("print('before', file=sys.stderr)\n"
               "with filtered_stderr(RUNTIME_NOISE, label='stage saved_model'):\n"
               "    print('converting', file=sys.stderr)\n"
               f"    os.write(2, {NOISE!r}.encode() + b'\\n')\n" + inner)
    assert proc.returncode == -signal.SIGABRT, proc.stderr
    lines = proc.stderr.splitlines()
    label = "stage saved_model, importing TensorFlow" if nested else "stage saved_model"
    assert lines == ["before", "converting", "F0000 tensor_format.h:428] Check failed: index >= 0",
                     f"error: {label} {DIED}"], lines


def test_a_clean_block_forwards_other_lines_in_order_and_drops_noise():
    """Python and C-level writes, a child process's lines, a partial last line; noise and blank lines dropped;
    no error line; what follows the block comes after everything written inside it."""
    proc = run("with filtered_stderr(RUNTIME_NOISE, label='stage tfjs'):\n"
               "    print('one', file=sys.stderr)\n"
               f"    os.write(2, {NOISE!r}.encode() + b'\\n\\n')\n"
               "    subprocess.run([sys.executable, '-c', 'import os; os.write(2, b\"two from a child\\\\n\")'])\n"
               "    os.write(2, b'I0000 single_machine.cc:374] Starting new session\\nthree\\npartial')\n"
               "print('after', file=sys.stderr)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["one", "two from a child", "three", "partial", "after"]


def test_an_exception_inside_the_block_is_not_a_death():
    proc = run("with filtered_stderr(RUNTIME_NOISE, label='stage saved_model'):\n"
               "    raise ValueError('bad graph')\n")
    assert proc.returncode == 1
    assert "ValueError: bad graph" in proc.stderr and errors(proc.stderr) == []


def _read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


@pytest.mark.parametrize("end", ["finish", "sigkill"])
def test_lines_reach_stderr_while_the_block_is_still_running(end):
    """The first line arrives while the process still waits inside the block (a filter that holds the lines until
    the block ends would show nothing); killed there with SIGKILL, the block's label still ends the output."""
    code = HEAD + ("with filtered_stderr(RUNTIME_NOISE, label='validation saved_model runner'):\n"
                   f"    os.write(2, {NOISE!r}.encode() + b'\\n')\n"
                   "    print('waiting', file=sys.stderr)\n"
                   "    sys.stdin.readline()\n"
                   "print('done', file=sys.stderr)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        first = _read_line(proc.stderr, 30)
        assert first == "waiting\n"
        assert proc.poll() is None   # still inside the block
        if end == "finish":
            proc.stdin.write("go\n")
            proc.stdin.flush()
        else:
            proc.send_signal(signal.SIGKILL)
        rest = proc.stderr.read()   # to EOF: the filter process writes its last line, then closes
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if end == "finish":
        assert code == 0 and rest.splitlines() == ["done"]
    else:
        assert code == -signal.SIGKILL
        assert rest.splitlines() == [f"error: validation saved_model runner {DIED}"]
