"""``python -m app``: run the desktop application."""

import sys

from app.main import main

if __name__ == "__main__":  # not when a helper process (multiprocessing "spawn") imports this module
    sys.exit(main())
