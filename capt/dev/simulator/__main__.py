"""`python -m capt.dev.simulator` (see simulator.app)."""

import sys

from capt.dev.simulator.app import main

if __name__ == "__main__":
    sys.exit(main())
