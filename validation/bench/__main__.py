"""``python -m validation.bench``: see ``validation.bench.cli``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
