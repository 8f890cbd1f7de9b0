"""`python -m capt.dev.bench.aws_calls`: the benchmark alone (as `python -m capt.dev.bench aws_calls`)."""

import sys

from capt.dev.bench.aws_calls.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
