"""The one base of capt's immutable value models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, and strict about its fields: a value that carries a field this version does
    not know is refused rather than silently dropped (docs/versioning.md, "Payload models")."""

    model_config = ConfigDict(frozen=True, extra="forbid")
