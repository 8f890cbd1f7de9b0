"""Every AWS resource name capt derives for a cluster, spelled once.

Names derive from the cluster's **id**, its identity in AWS (`cluster_id`): `<namespace>.<name>`,
so that `prod` in `team-a` and `prod` in `team-b` never share a name or an ownership tag. A
cluster created before ids were namespaced keeps its bare name as its id (ClusterWorkflow
chooses once and carries the choice), so its names never change.

The names follow CAPA's (`<id>-vpc`, `<id>-subnet-public-<az>`, ...) so that a capt cluster
looks familiar in the AWS console. Load balancer and target group names are limited to 32
characters of [A-Za-z0-9-]; an id that does not fit, or has other characters (the dot), gets a
stable hash of the whole id in its name (`elb_safe`).
"""

from __future__ import annotations

import hashlib
import re

ELB_NAME_MAX = 32
# The id is a Kubernetes cluster name too (the cloud provider's --cluster-name, the EBS CSI
# driver's --k8s-tag-cluster-id) and part of tag keys (`kubernetes.io/cluster/<id>`, 128 at
# most): a DNS label's 63 characters keep every use within its limit.
CLUSTER_ID_MAX = 63
_HASHED_ID_PREFIX = CLUSTER_ID_MAX - 11  # 52 characters, "-", 10 of the hash
_ELB_SAFE = re.compile(r"[A-Za-z0-9-]+")


def _base36(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def cluster_id(namespace: str, name: str) -> str:
    """`<namespace>.<name>`: unambiguous, as both are DNS-1123 labels (no dots), and never equal to
    a legacy id (a bare name has no dot). Longer than 63 characters: its first 52, "-" and 10
    base36 characters of a blake2b hash of the whole (as CAPA shortens long names)."""
    key = f"{namespace}.{name}"
    if len(key) <= CLUSTER_ID_MAX:
        return key
    digest = _base36(hashlib.blake2b(key.encode(), digest_size=16).digest()).rjust(10, "0")[:10]
    return f"{key[:_HASHED_ID_PREFIX].rstrip('.-')}-{digest}"


def elb_safe(cluster: str, suffix: str) -> str:
    """A load balancer or target group name: at most 32 characters of [A-Za-z0-9-].

    `<id>-<suffix>` when the id has only those characters and the result fits: a legacy id (a
    DNS label) keeps the name it always had. Otherwise a sanitised prefix of the id, 8 hex of
    sha256(id) and the suffix: `team-a.prod` becomes `team-a-prod-<h8>-apiserver`, and ids that
    differ only in where the dot is (`a-b.c`, `a.b-c`) get different names.
    """
    name = f"{cluster}-{suffix}"
    if _ELB_SAFE.fullmatch(cluster) and len(name) <= ELB_NAME_MAX:
        return name
    base = re.sub(r"[^A-Za-z0-9-]", "-", cluster)
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:8]
    keep = ELB_NAME_MAX - len(suffix) - len(digest) - 2
    prefix = base[:keep].strip("-")
    return f"{prefix}-{digest}-{suffix}" if prefix else f"{digest}-{suffix}"


def vpc(cluster: str) -> str:
    return f"{cluster}-vpc"


def subnet(cluster: str, is_public: bool, az: str) -> str:
    return f"{cluster}-subnet-{'public' if is_public else 'private'}-{az}"


def internet_gateway(cluster: str) -> str:
    return f"{cluster}-igw"


def nat_gateway(cluster: str, az: str) -> str:
    return f"{cluster}-nat-{az}"


def nat_eip(cluster: str, az: str) -> str:
    return f"{cluster}-eip-nat-{az}"


def route_table(cluster: str, is_public: bool, az: str) -> str:
    return f"{cluster}-rt-{'public' if is_public else 'private'}-{az}"


def security_group(cluster: str, role: str) -> str:
    # CAPA prefixes "@" when the cluster name itself starts with "sg-": EC2 rejects group
    # names that look like group ids.
    prefix = f"@{cluster}" if cluster.startswith("sg-") else cluster
    return f"{prefix}-{role}"


def bastion(cluster: str) -> str:
    return f"{cluster}-bastion"


def load_balancer(cluster: str) -> str:
    return elb_safe(cluster, "apiserver")


def target_group(lb_name: str) -> str:
    return elb_safe(lb_name, "tg")
