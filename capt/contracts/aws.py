"""The base of every AWS activity's result, shared with the workflows that carry results (a
machine carries its cluster's PKI references)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AwsResult(BaseModel):
    """Base of every AWS activity result: AWS requests sent by the attempt, per operation."""

    model_config = ConfigDict(frozen=True)

    aws_calls: dict[str, int] = {}
