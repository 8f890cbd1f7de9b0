"""Deterministic ClientTokens for the AWS calls that take one.

EC2 makes CreateNatGateway, CreateRouteTable and RunInstances idempotent per ClientToken:
a repeat with the same token returns the first result instead of creating a second resource.
That covers the one gap left by "look up by tag, then create" -- a create whose response was
lost and whose resource a read does not show yet (EC2 reads are eventually consistent).

A token is derived from what identifies the resource (cluster, kind, name, parent ids) and
from the workflow run that asks for it: every retry of the activity in that run sends the same
token, while a later run (e.g. re-creating a deleted cluster) gets fresh ones -- AWS keeps a
token's first result for a while, and a re-used token would hand back the deleted resource.
Tokens are at most 64 ASCII characters, as EC2 requires. Creates that take no ClientToken carry
a token derived the same way in a tag instead (`capt/create-token`, capt/activities/aws/idempotent.py).
"""

from __future__ import annotations

import hashlib

MAX_LENGTH = 64


def client_token(kind: str, cluster: str, name: str, *parents: str, scope: str) -> str:
    material = "\x1f".join((kind, cluster, name, *parents, scope))
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"capt-{kind}-{digest}"[:MAX_LENGTH]
