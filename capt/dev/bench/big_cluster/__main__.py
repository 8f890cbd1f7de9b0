"""`python -m capt.dev.bench.big_cluster`: the benchmark alone (as `python -m capt.dev.bench big_cluster`)."""

import sys

from capt.dev.bench.big_cluster.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
