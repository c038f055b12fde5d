"""Drop known noise lines from everything the process writes to stderr, line by line, surviving its death.

Why: TensorFlow's C++ side writes lines to file descriptor 2 that say nothing about the conversion (GPU plugins
registered twice, the CUDA probe failing on a machine without a GPU); ``TF_CPP_MIN_LOG_LEVEL`` does not reach them
all. They must go, but nothing else may be lost: above all not the last message of a process that TensorFlow
aborts (``Check failed: ...``), which a filter that holds the lines until the block ends never writes.

How: :func:`filtered_stderr` points fd 2 at a pipe for the duration of a block; a small filter process (this file
run as a script, standard library only) reads the pipe and writes every line that the noise pattern does not
match to the real stderr as soon as the line is complete. C++ code and child processes of the block write to fd 2
too, so their lines are filtered the same way. When the block ends (normally or by an exception) the parent
writes an end mark with a per-block token and waits for the filter to finish. If the pipe closes without the
mark, the process ended inside the block (abort, segfault, kill): the filter writes what was left and then one
line ``error: <label> died ...`` naming the block (e.g. ``stage saved_model``). The filter runs in its own session,
so a Ctrl-C at the terminal reaches the converter (which ends the block cleanly) and not the filter.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

END_MARK = b"\0nanodet-stderr-filter-end "
DIED = "died (the process ended inside it, e.g. TensorFlow aborted); its last message is above"
WAIT_S = 10.0   # for the filter to write the rest after the block; a writer that outlives the block (a detached
#                 grandchild) keeps the pipe open: the parent goes on after this, the filter still forwards to EOF
_ACTIVE: list[str] = []   # labels of the blocks now open in this process, outermost first


def died_line(label: str) -> bytes:
    return f"error: {label} {DIED}\n".encode()


def _forward(line: bytes, noise: re.Pattern) -> None:
    text = line.decode("utf-8", "replace")
    if text.strip() and not noise.search(text):
        with contextlib.suppress(OSError):   # stderr gone: keep draining the pipe so that the writer never blocks
            os.write(2, line if line.endswith(b"\n") else line + b"\n")


def run_filter(noise: re.Pattern, label: str, token: bytes) -> int:
    """The filter process: fd 0 (the pipe) -> fd 2 (the real stderr), line by line, until EOF."""
    mark = END_MARK + token + b"\n"
    pending, ended, last = b"", False, b""
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line += b"\n"
            if line == mark:
                ended = True
                continue
            _forward(line, noise)
            if line.strip():
                last = line
    if pending:
        _forward(pending, noise)
        last = pending
    if not ended and DIED.encode() not in last:   # a nested block's filter has already said so
        with contextlib.suppress(OSError):
            os.write(2, died_line(label))
    return 0


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern, *, label: str):
    """Within the block, every line written to file descriptor 2 (by Python, C++ code or child processes) that
    ``noise`` does not match reaches the real stderr as soon as it is complete; noise lines are dropped. ``label``
    names the block (``stage saved_model``) in the one ``error:`` line written if the process dies inside it."""
    full = ", ".join(_ACTIVE + [label])
    token = secrets.token_hex(8).encode()
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    try:
        filt = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__).resolve()), noise.pattern, str(int(noise.flags)), full,
             token.decode()],
            stdin=read_end, stdout=saved, stderr=saved, start_new_session=True)
    except BaseException:
        for fd in (write_end, saved):
            os.close(fd)
        raise
    finally:
        os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    _ACTIVE.append(label)
    try:
        yield
    finally:
        _ACTIVE.pop()
        sys.stderr.flush()
        with contextlib.suppress(OSError):   # on a line of its own even after a partial line
            os.write(2, b"\n" + END_MARK + token + b"\n")
        os.dup2(saved, 2)
        os.close(saved)
        with contextlib.suppress(subprocess.TimeoutExpired):
            filt.wait(timeout=WAIT_S)


def main(argv: list[str]) -> int:
    pattern, flags, label, token = argv
    return run_filter(re.compile(pattern, int(flags)), label, token.encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
