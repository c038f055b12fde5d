"""Which Node.js the toolkit needs, and the check that says so before a long run.

The TFJS models are checked in Node (validation, the int64 audit's dynamic part, the JS module check, bench).
``js/package-lock.json`` pins packages that need Node >= 20.9 (sharp 0.35), so that is the minimum everywhere
(README, ``make js``, ``js/package.json`` engines, and the check below). Converting alone does not run Node.
"""
from __future__ import annotations

import functools
import re
import subprocess

from .errors import UserError

NODE_MINIMUM = (20, 9)
NODE_MINIMUM_TEXT = ".".join(str(v) for v in NODE_MINIMUM)


@functools.lru_cache(maxsize=8)
def node_version(executable: str) -> tuple[int, ...] | None:
    """(major, minor, patch) of ``executable --version`` (``v20.9.0``), or None where it says something else."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(v) for v in found.groups()) if found else None


def check_node_version(executable: str, why: str) -> None:
    """UserError where ``executable`` is not a Node.js >= NODE_MINIMUM (``why``: what needs it)."""
    version = node_version(executable)
    if version is None:
        raise UserError(f"{executable}: does not answer --version like Node.js does: install Node.js >= "
                        f"{NODE_MINIMUM_TEXT} ({why})")
    if version[:2] < NODE_MINIMUM:
        raise UserError(f"{executable} is Node.js v{'.'.join(map(str, version))}: Node.js >= {NODE_MINIMUM_TEXT} "
                        f"is needed ({why})")
