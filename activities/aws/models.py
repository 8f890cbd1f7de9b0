"""Small models shared by the AWS activities: who the cluster is, and what a result carries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from spec.models import ClusterSpec


class ClusterRef(BaseModel):
    """What an AWS activity needs to know about the cluster: its name, region and extra tags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    region: str
    additional_tags: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, spec: ClusterSpec) -> ClusterRef:
        return cls(name=spec.name, region=spec.region, additional_tags=spec.additional_tags)


class AwsResult(BaseModel):
    """Base of every AWS activity result: AWS requests sent by the attempt, per operation."""

    model_config = ConfigDict(frozen=True)

    aws_calls: dict[str, int] = {}


class DoneResult(AwsResult):
    """Result of a delete or other action: `changed` is False when there was nothing left to do."""

    changed: bool = True
