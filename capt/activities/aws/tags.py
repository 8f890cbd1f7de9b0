"""Every tag key capt writes or reads on AWS resources, spelled once (CAPA's keys).

`<id>` below is the cluster's id (contracts.names.cluster_id): `<namespace>.<name>`, or the bare name
for a cluster created before ids were namespaced. The functions' `cluster` argument is that id.

- `sigs.k8s.io/cluster-api-provider-aws/cluster/<id>` = `owned`: capt created the resource
  for this cluster and will delete it. Lookups and the final sweep key on this tag; a resource
  with capt's Name but without it is never adopted.
- `sigs.k8s.io/cluster-api-provider-aws/role` = `common` | `public` | `private` | `apiserver` |
  `bastion` | the security group role.
- `Name`.
- `kubernetes.io/cluster/<id>`: for the in-cluster AWS cloud provider. `owned` on the
  resources capt owns, `shared` on subnets (other clusters' load balancers may use them).
  Following CAPA, among the security groups only `<id>-lb` carries it: the cloud
  provider refuses instances with more than one tagged group.
- `capt/machine` = `<machine>` on instances: the machine an instance was launched for, so that
  `ensure_instance` finds it after a lost RunInstances response. Role `control-plane` | `node`
  on instances, as CAPA's.
- `capt/create-token` = `<token>` on what a create without a ClientToken or a unique name makes
  (VPC, internet gateway, Elastic IP): the step that created it, so a retry after a lost response
  finds it (capt/activities/aws/idempotent.py).
- `kubernetes.io/role/elb` / `kubernetes.io/role/internal-elb` = `1` on public / private subnets,
  where the cloud provider puts internet-facing / internal Service load balancers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from capt.activities.aws.errors import NotOwnedError

CLUSTER_TAG_PREFIX = "sigs.k8s.io/cluster-api-provider-aws/cluster/"
ROLE_TAG = "sigs.k8s.io/cluster-api-provider-aws/role"
NAME_TAG = "Name"
CLOUD_PROVIDER_TAG_PREFIX = "kubernetes.io/cluster/"
ELB_SUBNET_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_SUBNET_TAG = "kubernetes.io/role/internal-elb"
MACHINE_TAG = "capt/machine"
CREATE_TOKEN_TAG = "capt/create-token"

OWNED = "owned"
SHARED = "shared"

ROLE_COMMON = "common"
ROLE_PUBLIC = "public"
ROLE_PRIVATE = "private"
ROLE_APISERVER = "apiserver"
ROLE_BASTION = "bastion"
ROLE_CONTROL_PLANE = "control-plane"
ROLE_NODE = "node"


def cluster_key(cluster: str) -> str:
    return f"{CLUSTER_TAG_PREFIX}{cluster}"


def cloud_provider_key(cluster: str) -> str:
    return f"{CLOUD_PROVIDER_TAG_PREFIX}{cluster}"


def build(
    cluster: str,
    name: str,
    role: str,
    *,
    cloud_provider: str | None = OWNED,
    additional: Iterable[tuple[str, str]] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The tags for a resource capt owns; the cluster's additional tags never override ours."""
    tags = dict(additional)
    tags.update(extra or {})
    tags[NAME_TAG] = name
    tags[cluster_key(cluster)] = OWNED
    tags[ROLE_TAG] = role
    if cloud_provider:
        tags[cloud_provider_key(cluster)] = cloud_provider
    return tags


def as_dict(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    """EC2/ELB `[{"Key": k, "Value": v}]` -> `{k: v}`."""
    return {t["Key"]: t.get("Value", "") for t in tags or ()}


def as_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def specification(resource_type: str, tags: Mapping[str, str]) -> list[dict]:
    """EC2 `TagSpecifications`: tags applied atomically with the create call."""
    return [{"ResourceType": resource_type, "Tags": as_list(tags)}]


def owned_filter(cluster: str) -> dict:
    """EC2 filter for resources the cluster owns (honoured by AWS; moto ignores it on some types,
    so callers also check `is_owned` client-side)."""
    return {"Name": f"tag:{cluster_key(cluster)}", "Values": [OWNED]}


def name_filter(name: str) -> dict:
    return {"Name": f"tag:{NAME_TAG}", "Values": [name]}


def machine_filter(machine: str) -> dict:
    return {"Name": f"tag:{MACHINE_TAG}", "Values": [machine]}


def create_token_filter(token: str) -> dict:
    return {"Name": f"tag:{CREATE_TOKEN_TAG}", "Values": [token]}


def is_owned(tags: Mapping[str, str], cluster: str) -> bool:
    return tags.get(cluster_key(cluster)) == OWNED


def name_of(tags: Mapping[str, str]) -> str:
    return tags.get(NAME_TAG, "")


def pick_owned(resources: Iterable[dict], cluster: str, name: str, kind: str, id_key: str) -> dict | None:
    """The resource named `name` that the cluster owns, or None.

    Raises NotOwnedError when a resource carries the name but not the cluster's owned tag.
    When several owned ones exist (only possible after an out-of-band duplicate) the one with
    the smallest id is used, so every retry settles on the same resource.
    """
    named = [r for r in resources if name_of(as_dict(r.get("Tags"))) == name]
    foreign = [r[id_key] for r in named if not is_owned(as_dict(r.get("Tags")), cluster)]
    if foreign:
        raise NotOwnedError(
            f"{kind} {foreign[0]} is named {name!r} but is not tagged {cluster_key(cluster)}={OWNED}; capt will not adopt it"
        )
    if not named:
        return None
    return min(named, key=lambda r: r[id_key])
