"""The `capt` command group: global options, logging through the redaction filter."""

from __future__ import annotations

import logging
import os

import click

from capt.activities import redaction


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capt", prog_name="capt", message="%(prog)s %(version)s")
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0.1),
    envvar="CAPT_REQUEST_TIMEOUT",
    default=15.0,
    show_default=True,
    help="Seconds to wait for Temporal to answer a connection or request (then exit 4).",
)
def main(request_timeout: float) -> None:
    """Create and run self-managed kubeadm clusters on AWS with Temporal workflows."""

    os.environ["CAPT_REQUEST_TIMEOUT"] = str(request_timeout)
    # Library logs (botocore, the Temporal SDK) at CAPT_LOG_LEVEL (default WARNING), every line
    # through the redaction filter: no secret value at any level.
    logging.basicConfig(
        level=os.environ.get("CAPT_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redaction.install()
