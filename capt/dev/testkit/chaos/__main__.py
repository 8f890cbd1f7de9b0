"""`python -m capt.dev.testkit.chaos` (see chaos.cli)."""

import sys

from capt.dev.testkit.chaos.cli import main

if __name__ == "__main__":
    sys.exit(main())
