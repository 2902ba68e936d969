"""The bundled command line's entry point (``agelapse-cli`` in the bundle): ``core.cli:main``."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
