"""`python -m bt_core ...`: the command line, which lives with the service (bt_core/serve/cli.py)."""

import sys

from bt_core.serve.cli import main

if __name__ == "__main__":
    sys.exit(main())
