"""capt — Cluster API as durable Temporal workflows.

The CLI is thin: parse options, call a helper (spec loader, Temporal client, devstack),
render the result. Every command exits non-zero with one clear line on failure.

The commands live one module per verb group; importing them registers them on `main`.
"""

from capt.cli import change, codec, kubeconfig, manifests, read  # noqa: F401  (registers the commands)
from capt.cli.iam import bootstrap_group
from capt.cli.root import main
from capt.dev.stack.cli import dev

main.add_command(dev)
main.add_command(bootstrap_group)

__all__ = ["main"]
