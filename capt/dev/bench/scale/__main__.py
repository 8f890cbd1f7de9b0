"""`python -m capt.dev.bench.scale`: the benchmark alone (as `python -m capt.dev.bench scale`)."""

import sys

from capt.dev.bench.scale.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
