"""The bundled desktop app's entry point (``agelapse`` in the bundle): ``app.main:main``."""

import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
