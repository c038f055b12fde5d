import sys

from .cli import main, run_main

sys.exit(run_main(main))
