"""Small models shared by the AWS activities: who the cluster is, and what a result carries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from capt.contracts.aws import AwsResult
from capt.rules.base import Frozen
from capt.spec.models import ClusterSpec


class ClusterRef(Frozen):
    """What an AWS activity needs to know about the cluster: its identity, region and extra tags.

    `name` is the cluster's **id** in AWS (`contracts.names.cluster_id`: `<namespace>.<name>`, or the
    bare name for a cluster created before ids were namespaced). Ownership tags and lookups key
    on it. The field keeps its old name so that payloads already in workflow histories decode.
    """

    name: str
    region: str
    additional_tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, spec: ClusterSpec, cluster_id: str | None = None) -> ClusterRef:
        """The ref of `spec`'s cluster with id `cluster_id` (None: the name, a legacy cluster)."""
        return cls(name=cluster_id or spec.name, region=spec.region, additional_tags=spec.additional_tags)


class DoneResult(AwsResult):
    """Result of a delete or other action: `changed` is False when there was nothing left to do."""

    changed: bool = True


class Blocker(BaseModel):
    """Why a resource could not be deleted: what still depends on it (an ENI, a security group
    rule, a load balancer, an attachment), or, when AWS named nothing, the error itself
    (`blocker_kind="error"`, `blocker_type` = the error code)."""

    model_config = ConfigDict(frozen=True)

    resource_kind: str
    resource_id: str
    blocker_kind: str
    blocker_id: str
    blocker_type: str = ""
    description: str = ""
    resource_name: str = ""  # the blocked resource's Name tag or name, for people

    def text(self) -> str:
        resource = f"{self.resource_kind} {self.resource_id}"
        if self.resource_name and self.resource_name != self.resource_id:
            resource += f" ({self.resource_name})"
        what = f"{self.blocker_kind} {self.blocker_id}" if self.blocker_id else self.blocker_kind
        detail = ", ".join(p for p in (self.blocker_type, self.description) if p)
        return f"{resource} blocked by {what}" + (f" ({detail})" if detail else "")
