"""Every AWS resource name capt derives for a cluster, spelled once.

The names follow CAPA's (`<cluster>-vpc`, `<cluster>-subnet-public-<az>`, ...) so that a
capt cluster looks familiar in the AWS console. Load balancer and target group names are
limited to 32 characters of [A-Za-z0-9-]; longer ones are shortened with a stable hash.
"""

from __future__ import annotations

import hashlib
import re

ELB_NAME_MAX = 32


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


def _short(base: str, suffix: str, salt: str) -> str:
    """`<base>-<suffix>` if it fits in 32 characters, else a prefix of base plus a stable hash.

    Characters ELB does not allow (a Kubernetes name may contain dots) become hyphens.
    """
    base = re.sub(r"[^A-Za-z0-9-]", "-", base)
    name = f"{base}-{suffix}"
    if len(name) <= ELB_NAME_MAX:
        return name
    digest = hashlib.sha256(salt.encode()).hexdigest()[:8]
    keep = ELB_NAME_MAX - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-')}-{digest}-{suffix}"


def load_balancer(cluster: str) -> str:
    return _short(cluster, "apiserver", cluster)


def target_group(lb_name: str) -> str:
    return _short(lb_name, "tg", lb_name)
