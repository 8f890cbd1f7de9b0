"""Secrets the user supplies, and where a manifest may reference them.

capt keeps every secret value out of workflow histories. A manifest names user secrets the way
Cluster API does — `files[].contentFrom.secret {name, key}`, `users[].passwdFrom.secret {name,
key}`, and ClusterResourceSet resources of kind Secret — and the referenced `Secret` documents
(core v1, `data` base64 or `stringData`) travel beside the manifest. The loader resolves every
reference (an error names the field when the Secret or key is missing) and hands the values to
the CLI in `LoadResult.secrets`, never in the `ClusterSpec`. The CLI stores them in Secrets
Manager under the cluster's prefix before the workflow starts; activities read them there by name.

Also here: the heuristics behind `capt validate`'s warnings about secret material written inline.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from capt.spec.documents import Doc

# CAPI's ClusterResourceSet only applies Secrets of this type (the CRS controller refuses others).
CRS_SECRET_TYPE = "addons.cluster.x-k8s.io/resource-set"


@dataclass(frozen=True)
class SecretKeyRef:
    """One value of one Secret document, referenced from `path` of the document `doc_index`."""

    name: str
    key: str
    path: str


def read_secret(doc: Doc) -> dict[str, bytes]:
    """A Secret document's values: `data` (base64, as Kubernetes stores it) merged with
    `stringData` (plain text, which wins on a shared key, as the API server does)."""
    doc.str("type")  # any type (a ClusterResourceSet's must be addons.cluster.x-k8s.io/resource-set)
    doc.bool("immutable")
    values: dict[str, bytes] = {}
    for key, value in doc.dict("data").items():
        if value is None:
            values[str(key)] = b""
            continue
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            doc.problem(f"data.{key}", "is not valid base64 (put plain text under stringData instead)")
    for key, value in doc.dict("stringData").items():
        values[str(key)] = b"" if value is None else str(value).encode()
    return values


def _ref(doc: Doc, path: str, value: Any) -> SecretKeyRef | None:
    """`{secret: {name, key}}` (CAPI's SecretFileSource / PasswdSource) or a problem naming the field."""
    secret = value.get("secret") if isinstance(value, dict) else None
    if not isinstance(secret, dict):
        doc.problem(path, "needs secret: {name: <Secret name>, key: <key in the Secret>}")
        return None
    name, key = secret.get("name"), secret.get("key")
    if not isinstance(name, str) or not name:
        doc.problem(f"{path}.secret.name", "is required")
        return None
    if not isinstance(key, str) or not key:
        doc.problem(f"{path}.secret.key", "is required")
        return None
    return SecretKeyRef(name=name, key=key, path=f"{path}.secret")


def kubeadm_secret_refs(doc: Doc, path: str) -> list[SecretKeyRef]:
    """Every Secret reference of a KubeadmConfigSpec at `path` (files' contentFrom, users'
    passwdFrom); both an inline value and a reference on one entry is a problem, as in CAPI."""
    refs: list[SecretKeyRef] = []
    for i, f in enumerate(doc.list(f"{path}.files")):
        if isinstance(f, dict) and "contentFrom" in f:
            if f.get("content"):
                doc.problem(f"{path}.files[{i}]", "set content or contentFrom, not both")
            if ref := _ref(doc, f"{path}.files[{i}].contentFrom", f["contentFrom"]):
                refs.append(ref)
    for i, u in enumerate(doc.list(f"{path}.users")):
        if isinstance(u, dict) and "passwdFrom" in u:
            if u.get("passwd"):
                doc.problem(f"{path}.users[{i}]", "set passwd or passwdFrom, not both")
            if ref := _ref(doc, f"{path}.users[{i}].passwdFrom", u["passwdFrom"]):
                refs.append(ref)
    return refs


# --------------------------------------------------------------------------------------------
# inline secret material: validate warns (the values are encrypted in Temporal by the payload
# codec, but they are in every history of the cluster; a Secret reference keeps them out)

_KEY_MATERIAL = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"-----BEGIN CERTIFICATE-----"), "a PEM certificate"),
    (
        re.compile(r"(?m)^\s*(client-key-data|client-certificate-data|token):\s*\S"),
        "a kubeconfig's credentials",
    ),
    (re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"), "a kubeadm bootstrap token"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
    (re.compile(r"(?i)(aws_secret_access_key|secret_?key|password|passwd)\s*[:=]\s*\S"), "a credential"),
)


def looks_like_key_material(text: str) -> str | None:
    """What the text looks like ("a PEM private key", …) when it holds secret material."""
    for pattern, what in _KEY_MATERIAL:
        if pattern.search(text):
            return what
    return None


def inline_secret_warnings(doc: Doc, path: str) -> list[str]:
    """Warnings for a KubeadmConfigSpec's inline files that look like key material and for
    inline user passwords: each names the field and the reference to use instead."""
    out: list[str] = []
    where = f"document {doc.index}: {doc.kind}/{doc.name}"
    for i, f in enumerate(doc.list(f"{path}.files")):
        if not isinstance(f, dict) or not isinstance(f.get("content"), str):
            continue
        if what := looks_like_key_material(f["content"]):
            out.append(
                f"{where}: {path}.files[{i}].content looks like {what}; inline content is stored "
                "(encrypted) in every workflow history of the cluster — put it in a Secret and use "
                "contentFrom.secret"
            )
    for i, u in enumerate(doc.list(f"{path}.users")):
        if isinstance(u, dict) and u.get("passwd"):
            out.append(
                f"{where}: {path}.users[{i}].passwd is inline; use passwdFrom.secret to keep it out of "
                "workflow histories"
            )
    return out
