import sys

from contracts.errors import run_main

from .cli import main

sys.exit(run_main(main))
