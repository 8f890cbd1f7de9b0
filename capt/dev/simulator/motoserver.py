"""`python -m capt.dev.simulator.motoserver --amis FILE [--region R ...] [moto.server args]`

moto's server, started with CAPA-style images (capt/dev/simulator/amis.py) loaded: the file is written,
`MOTO_AMIS_PATH` set, and only then moto imported (moto reads the variable at import). One
process, so `capt dev` tracks and stops it like any other service.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m capt.dev.simulator.motoserver", add_help=False)
    parser.add_argument("--amis", type=Path, required=True)
    parser.add_argument("--region", action="append", default=[])
    args, moto_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    from capt.dev.simulator.amis import write_amis_file

    count = write_amis_file(args.amis, args.region)
    os.environ["MOTO_AMIS_PATH"] = str(args.amis.resolve())
    print(f"capt: {count} machine images in {args.amis} (MOTO_AMIS_PATH)", flush=True)
    from moto.server import main as moto_main

    moto_main(moto_args)


if __name__ == "__main__":
    main()
