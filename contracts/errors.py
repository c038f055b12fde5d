"""Errors reported as one line (never a traceback), and the wrapper every command line uses."""
from __future__ import annotations

import sys
import traceback


class ReportedError(Exception):
    """An outcome the user must see as one line ``error: <message>`` and an exit code, not a traceback."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UserError(ReportedError):
    """A problem with what the user gave us (a file, a config, an option).

    The message must name the file or option and say what is wrong, on one line.
    """

    exit_code = 2


def run_main(main, argv=None, crash_message: str | None = None) -> int:
    """Run a command's ``main(argv)``: a ReportedError becomes one line on stderr and its exit code.

    With ``crash_message``, any other exception (a bug or a tool failure) keeps its traceback for the bug report
    and ends with one line ``error: <crash_message>: <exception>`` and exit code 1.
    """
    try:
        return main(argv) or 0
    except ReportedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted (unfinished work was discarded)", file=sys.stderr)
        return 130
    except Exception as exc:
        if crash_message is None:
            raise
        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"error: {crash_message}: {exc.__class__.__name__}: {first}", file=sys.stderr)
        return 1
