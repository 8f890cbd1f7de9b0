"""Worker Versioning for capt's workflows (the policy: docs/versioning.md).

- Each workflow declares how it moves between builds (`versioning_behavior` on its
  `@workflow.defn`): PINNED workflows finish on the build that started them; AUTO_UPGRADE ones
  move to the deployment's current version at their next workflow task, so every change to
  their code must replay their committed histories (tests/workflows/test_replay.py) and guard
  a new command order with `workflow.patched`.
- A versioned worker belongs to a Worker Deployment (`capt` by default) and announces a build
  id. The default build id is the package version plus a digest of the workflow sources, so a
  change to workflow code is a new build while a change to activities or the CLI is not.
- A version gets workflow tasks only once it is the deployment's current version:
  `set_current_version` below (the local stack calls it after starting its worker; elsewhere
  `temporal worker deployment set-current-version`).

Nothing here runs inside a workflow: it is the worker's and the local stack's configuration.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from importlib import metadata
from pathlib import Path

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError
from temporalio.worker import WorkerDeploymentConfig

DEFAULT_DEPLOYMENT_NAME = "capt"

# The packages whose code decides workflow commands: the workflows, the spec models their
# state and validators are made of, the contracts (ids, names) and pure rules they follow, and the network plan
# InfrastructureWorkflow follows. (Activities run outside the workflow sandbox: changing them
# needs no new build of the workflow code.)
WORKFLOW_SOURCE_PACKAGES = ("capt.workflows", "capt.contracts", "capt.rules", "capt.spec", "capt.plan")

PINNED = VersioningBehavior.PINNED
AUTO_UPGRADE = VersioningBehavior.AUTO_UPGRADE


def package_version() -> str:
    try:
        return metadata.version("capt")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def workflow_sources_digest(packages: tuple[str, ...] = WORKFLOW_SOURCE_PACKAGES) -> str:
    """sha256 over every .py file of `packages` (path relative to the package's parent, then
    content), in a stable order: the same sources give the same digest on any machine."""
    import importlib

    digest = hashlib.sha256()
    for name in packages:
        root = Path(importlib.import_module(name).__file__).parent  # type: ignore[arg-type]
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).as_posix()
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def default_build_id() -> str:
    """`<package version>-<first 12 hex digits of the workflow sources' digest>`, e.g. `0.1.0-3f2a9c81d0e4`."""
    return f"{package_version()}-{workflow_sources_digest()[:12]}"


def deployment_config(deployment_name: str, build_id: str | None = None) -> WorkerDeploymentConfig:
    """A versioned worker of `deployment_name` with `build_id` (default: `default_build_id()`).

    No default versioning behavior: every registered workflow must declare its own, so a new
    workflow cannot slip in without a decision (the SDK refuses to start the worker otherwise)."""
    if not deployment_name:
        raise ValueError("a versioned worker needs a deployment name")
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=deployment_name, build_id=build_id or default_build_id()
        ),
        use_worker_versioning=True,
    )


async def set_current_version(
    client: Client, deployment_name: str, build_id: str, *, timeout: float = 60.0, identity: str = "capt"
) -> None:
    """Make `deployment_name.build_id` the deployment's current version, so its workers get tasks.

    The server refuses while it has seen no poller of that version (the worker polls a moment
    after it starts): retried until `timeout`. Idempotent."""
    from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest

    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment_name,
                    build_id=build_id,
                    identity=identity,
                )
            )
            return
        except RPCError as err:
            if time.monotonic() + delay > deadline:
                raise RuntimeError(
                    f"could not make {deployment_name}.{build_id} the current version: {err.message}"
                ) from err
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def current_version(client: Client, deployment_name: str) -> str | None:
    """The deployment's current build id (None: unversioned workers get the tasks)."""
    from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest

    described = await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment_name)
    )
    routing = described.worker_deployment_info.routing_config
    return routing.current_deployment_version.build_id or None
