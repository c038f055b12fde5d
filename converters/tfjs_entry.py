"""``tensorflowjs_converter`` as a subprocess, with the import substitutes of ``contracts.tf_environment`` installed
first (the plain ``.venv/bin/tensorflowjs_converter`` script fails at import in this toolchain).

    python -m converters.tfjs_entry --input_format=tf_saved_model artifacts/m-416/saved_model /tmp/tfjs
Takes exactly the arguments of ``tensorflowjs_converter``.
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    from contracts.tf_environment import import_tensorflowjs
    import_tensorflowjs()
    from tensorflowjs.converters.converter import pip_main
    sys.argv = ["tensorflowjs_converter", *(sys.argv[1:] if argv is None else argv)]
    return pip_main() or 0


if __name__ == "__main__":
    sys.exit(main())
