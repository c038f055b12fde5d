"""Progress lines of the bench: on stderr, so that stdout carries the table alone."""
from __future__ import annotations

import sys


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
