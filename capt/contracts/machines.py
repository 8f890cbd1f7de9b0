"""What a MachineWorkflow reports: its `status` query and the signal its owner receives.

Owners, the health check and the client read it; its fields are a payload contract
(docs/versioning.md, "Payload models").
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from capt.contracts.aws import AwsResult
from capt.rules.base import Frozen

MachinePhase = Literal["Pending", "Provisioning", "Provisioned", "Running", "Deleting", "Deleted", "Failed"]

MachineRole = Literal["control-plane", "worker"]

TERMINAL_PHASES = ("Deleted", "Failed")


class MachineStatus(Frozen):
    name: str
    role: MachineRole
    phase: MachinePhase = "Pending"
    revision: str = ""
    version: str = ""
    deployment: str | None = None
    failure_domain: str | None = None
    instance_id: str | None = None
    instance_state: str | None = None
    private_ip: str | None = None
    node_name: str | None = None
    node_ready: bool = False
    created_at: datetime | None = None
    running_at: datetime | None = None
    deletion_requested_at: datetime | None = None
    deleted_at: datetime | None = None
    failure_reason: str | None = None
    # Progress notes for humans (Web UI, describe): last step done.
    message: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def deleting(self) -> bool:
        return self.phase == "Deleting" or self.deletion_requested_at is not None


class ClusterPKIRefs(AwsResult):
    """Where the cluster's secrets are, and the CA's public-key hash (public by design)."""

    ca_arn: str
    etcd_ca_arn: str
    front_proxy_ca_arn: str
    sa_arn: str
    admin_arn: str
    kubeconfig_arn: str | None = None
    ca_cert_hash: str
    created: tuple[str, ...] = ()  # which of PKI_NAMES this run created (the rest were reused)
