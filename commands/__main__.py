"""``python -m commands <command> [options]`` (installed as ``nanodet-tfjs``): run one of the toolkit's commands.

``python -m commands --help`` lists them; ``python -m commands <command> --help`` gives a command's options.
Exit codes are the command's: 0 success, 1 a failed check or tool, 2 bad input (``error: <message>``).
"""
from __future__ import annotations

import importlib
import sys

from commands import COMMANDS


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m commands <command> [options]   (also: nanodet-tfjs <command> [options])", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, _, text) in COMMANDS.items()]
    lines += ["", "python -m commands <command> --help: the command's options"]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command '{argv[0]}'" if argv else "no command given"
        print(f"{usage()}\n\nerror: {what} (one of: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module, first, _ = COMMANDS[argv[0]]
    return importlib.import_module(f"commands.{module}").main(first + argv[1:])


if __name__ == "__main__":
    sys.exit(main())
