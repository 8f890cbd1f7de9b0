"""`python -m capt.cli`."""

from capt.cli import main

main()
