import sys

from .cli import main
from .errors import run_main

sys.exit(run_main(main))
