"""The models, constants and pure helpers of this workflow (its class is in workflow.py)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import capt.rules.control_plane_remediation as remediation
    from capt.spec.models import ControlPlaneSpec, KubeadmConfigSpec, MachineTemplate
    from capt.workflows.machine.models import ClusterContext, DeleteOptions
    from capt.workflows.machine_owner import (
        MachineBook,
    )


# workflow.patched id (docs/versioning.md): before the first machine of a new version, move
# kubeadm-config, CoreDNS and kube-proxy to it (CAPI's KCP upgrade step).
PATCH_COMPONENTS_FOLLOW = "control-plane-components-follow-version"


# A remediation request reads etcd's member list (through a healthy node, SSM) before the quorum
# decision, instead of taking the machines' nodes for the members.
PATCH_READS_ETCD_MEMBERS = "control-plane-reads-etcd-members"


# A remediation request remediates the machine CAPI's order picks among the unhealthy ones.
PATCH_REMEDIATION_ORDER = "control-plane-remediation-order"


# How long an etcd member list read for a remediation decision is reused (workflow seconds).
ETCD_MEMBERS_FRESH_SECONDS = 120.0


# When nothing happens, look again this often (machines signal changes; this is a safety net
# and how rolloutAfter deadlines are noticed).
IDLE_RECHECK = timedelta(minutes=5)


class ControlPlaneCarry(BaseModel):
    """State carried across continue-as-new."""

    model_config = ConfigDict(extra="forbid")

    book: MachineBook = MachineBook()
    initialized: bool = False
    remediation_in_progress: remediation.RemediationRecord | None = None
    remediations: dict[str, remediation.RemediationRecord] = {}  # replacement machine -> its record
    last_refusal: str = ""
    # The latest remediation, with its retry count (CAPI reports each retry).
    last_remediation: str = ""
    iterations: int = 0
    deleting: bool = False
    # How delete_all asked the machines to go (skip_node_cleanup on cluster deletion).
    delete_options: DeleteOptions | None = None
    paused: bool = False
    # The version kubeadm-config, CoreDNS and kube-proxy were last moved to (None: not known yet;
    # the oldest machine's version is taken then: what kubeadm init wrote, or an older upgrade).
    components_version: str | None = None


class ControlPlaneInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: ClusterContext
    spec: ControlPlaneSpec
    carry: ControlPlaneCarry | None = None
    # The ClusterWorkflow: told `control_plane_changed(ControlPlaneStatus)` when the status changes.
    owner_workflow_id: str | None = None
    # Continue-as-new after this many loop turns even if Temporal has not suggested it yet.
    max_iterations: int = 500


class ScaleRequest(BaseModel):
    replicas: int


class UpgradeRequest(BaseModel):
    version: str


class TemplateRequest(BaseModel):
    """A new machine template and/or kubeadm config: rolls every machine."""

    machine_template: MachineTemplate | None = None
    kubeadm: KubeadmConfigSpec | None = None
    rollout_after: str | None = None
    max_surge: int | None = None


def _parse_time(text: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise ValueError(f"rolloutAfter {text!r} is not an RFC 3339 time") from exc


def _drain_timeout(spec: ControlPlaneSpec) -> int:
    """KCP's nodeDrainTimeout as given: unset or 0 means no timeout (0 to the machine)."""
    return spec.node_drain_timeout_seconds or 0


# kubeadm issues a machine's certificates for one year when it runs init or join.
CERTIFICATE_LIFETIME_SECONDS = 365 * 86400


def _rollout_threshold(spec: ControlPlaneSpec, now: float) -> float | None:
    """Machines created before this need a rollout (None: none do for this reason): rolloutAfter
    once passed, and rolloutBefore.certificatesExpiryDays — a machine whose certificates (one
    year from its creation) expire within that many days is replaced, as CAPI does."""
    thresholds = []
    if spec.rollout_after:
        thresholds.append(_parse_time(spec.rollout_after))
    if spec.certificates_expiry_days is not None:
        thresholds.append(now - CERTIFICATE_LIFETIME_SECONDS + spec.certificates_expiry_days * 86400)
    return max(thresholds) if thresholds else None
