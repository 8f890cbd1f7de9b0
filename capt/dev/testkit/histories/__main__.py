"""`python -m capt.dev.testkit.histories` (see histories.cli)."""

import sys

from capt.dev.testkit.histories.cli import main

if __name__ == "__main__":
    sys.exit(main())
