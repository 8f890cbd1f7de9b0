"""What ClusterTeardownWorkflow needs beyond the infrastructure's own delete activities.

- `terminate_cluster_instances`: every instance the cluster owns (by its owned tag), whatever
  made it: a failed or abandoned machine, the bastion. The workflow then polls
  `instances.describe_cluster_instances` between durable timers until none is left.
- `revoke_security_group_references`: the rules that name a group about to be deleted. AWS
  refuses to delete a group while another group's rule references it (the cloud provider adds
  such a rule for every Service load balancer: the instances' group admits the ELB's group).
  Only groups being deleted and groups in the cluster's own VPCs are changed, never another
  VPC's.
- `delete_volume`, `delete_network_interface`: volumes the cluster's CSI driver made (or ours)
  and interfaces left in its VPC. In use = retried (bounded by the workflow).
- `describe_blockers`: once a delete gave up, *what* still holds the resource: for a group, the
  interfaces, load balancers, instances and rules that use it; for a subnet or VPC, what is
  still inside; for an internet gateway, the public addresses mapped in its VPC; for a volume,
  its attachments; for a target group, its load balancers. Reported in the cluster's status so
  that a person can act, then `capt delete` runs again.

Every activity takes the cluster's `ClusterRef` (its `name` is the cluster's AWS id) and reads
AWS afresh: a retry after a lost response does only what is still left.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import cluster_sweep, tags
from capt.activities.aws.blockers import (
    LIVE_INSTANCE_STATES,
    _In,
    _pages,
    describe_blockers,
)
from capt.activities.aws.errors import error_code, is_code, is_transient
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client


class ClusterInput(_In):
    cluster: ClusterRef


class InstanceState(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_id: str
    state: str
    name: str = ""


class InstancesResult(AwsResult):
    instances: tuple[InstanceState, ...] = ()


class RevokeReferencesInput(_In):
    cluster: ClusterRef
    # The groups being deleted: every rule naming one of them goes, in these groups and in
    # every group of `vpc_ids` (the cluster's own VPCs, `default` group included).
    group_ids: tuple[str, ...]
    vpc_ids: tuple[str, ...] = ()


class RevokeResult(AwsResult):
    revoked: int = 0
    groups_changed: tuple[str, ...] = ()


class VolumeIdInput(_In):
    cluster: ClusterRef
    volume_id: str


class NetworkInterfaceIdInput(_In):
    cluster: ClusterRef
    network_interface_id: str


# --- instances ---------------------------------------------------------------------------------


def _live_owned_instances(ec2, cluster: str) -> list[dict]:
    reservations = _pages(
        ec2.get_paginator("describe_instances"),
        "Reservations",
        Filters=[
            tags.owned_filter(cluster),
            {"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)},
        ],
    )
    return [
        i
        for r in reservations
        for i in r["Instances"]
        if tags.is_owned(tags.as_dict(i.get("Tags")), cluster) and i["State"]["Name"] in LIVE_INSTANCE_STATES
    ]


@aws_activity
def terminate_cluster_instances(inp: ClusterInput) -> InstancesResult:
    """Terminate every instance the cluster owns that is not terminated yet; returns them with
    the state TerminateInstances answered."""
    ec2 = client("ec2", inp.cluster.region)
    live = _live_owned_instances(ec2, inp.cluster.name)
    names = {i["InstanceId"]: tags.name_of(tags.as_dict(i.get("Tags"))) for i in live}
    out: list[InstanceState] = []
    ids = sorted(names)
    for start in range(0, len(ids), 50):
        batch = ids[start : start + 50]
        try:
            changes = ec2.terminate_instances(InstanceIds=batch)["TerminatingInstances"]
        except Exception as exc:
            if not is_code(exc, "InvalidInstanceID.NotFound"):
                raise
            changes = [{"InstanceId": i, "CurrentState": {"Name": "terminated"}} for i in batch]
        out += [
            InstanceState(
                instance_id=c["InstanceId"],
                state=c.get("CurrentState", {}).get("Name", "shutting-down"),
                name=names.get(c["InstanceId"], ""),
            )
            for c in changes
        ]
    return InstancesResult(instances=tuple(sorted(out, key=lambda i: i.instance_id)))


# --- security group references -------------------------------------------------------------------


def _naming(perm: dict, group_ids: set[str]) -> list[dict]:
    """One IpPermission per group pair of `perm` that names one of `group_ids`.

    One per call: EC2 refuses a whole revoke when one of its permissions does not match. Ports
    of a protocol without ports are sent as -1, which AWS ignores and moto requires."""
    return [
        {
            "IpProtocol": perm["IpProtocol"],
            "FromPort": perm.get("FromPort", -1),
            "ToPort": perm.get("ToPort", -1),
            # The description as it is: AWS ignores it when matching, moto compares it.
            "UserIdGroupPairs": [{k: v for k, v in pair.items() if k in ("GroupId", "Description")}],
        }
        for pair in perm.get("UserIdGroupPairs", [])
        if pair.get("GroupId") in group_ids
    ]


@aws_activity
def revoke_security_group_references(inp: RevokeReferencesInput) -> RevokeResult:
    ec2 = client("ec2", inp.cluster.region)
    doomed = set(inp.group_ids)
    groups: dict[str, dict] = {}
    for gid in inp.group_ids:
        try:
            for g in ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]:
                groups[g["GroupId"]] = g
        except Exception as exc:
            if not is_code(exc, "InvalidGroup.NotFound", "InvalidGroupId.NotFound"):
                raise
    if inp.vpc_ids:
        for g in _pages(
            ec2.get_paginator("describe_security_groups"),
            "SecurityGroups",
            Filters=[{"Name": "vpc-id", "Values": list(inp.vpc_ids)}],
        ):
            if g.get("VpcId") in inp.vpc_ids:
                groups[g["GroupId"]] = g
    revoked = 0
    changed: list[str] = []
    # One call per rule; a throttled or dropped call does not stop the others, so every attempt
    # gets as far as AWS lets it and the next one starts from what is left (re-read above).
    first_transient: Exception | None = None
    for gid, g in sorted(groups.items()):
        for perms_key, revoke in (
            ("IpPermissions", ec2.revoke_security_group_ingress),
            ("IpPermissionsEgress", ec2.revoke_security_group_egress),
        ):
            for perm in [one for p in g.get(perms_key, []) for one in _naming(p, doomed)]:
                try:
                    revoke(GroupId=gid, IpPermissions=[perm])
                except Exception as exc:
                    if is_code(exc, "InvalidPermission.NotFound", "InvalidGroup.NotFound"):
                        continue  # gone already (an earlier attempt whose answer was lost)
                    if is_transient(error_code(exc) or type(exc).__name__):
                        first_transient = first_transient or exc
                        continue
                    raise
                revoked += 1
                if gid not in changed:
                    changed.append(gid)
    if first_transient is not None:
        raise first_transient
    return RevokeResult(revoked=revoked, groups_changed=tuple(changed))


# --- volumes and network interfaces --------------------------------------------------------------


@aws_activity
def delete_volume(inp: VolumeIdInput) -> DoneResult:
    """Delete an available volume; gone = done; VolumeInUse (still attached) is retried."""
    try:
        client("ec2", inp.cluster.region).delete_volume(VolumeId=inp.volume_id)
    except Exception as exc:
        if is_code(exc, "InvalidVolume.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


@aws_activity
def delete_network_interface(inp: NetworkInterfaceIdInput) -> DoneResult:
    """Delete a detached interface; gone = done; in use is retried."""
    try:
        client("ec2", inp.cluster.region).delete_network_interface(
            NetworkInterfaceId=inp.network_interface_id
        )
    except Exception as exc:
        if is_code(exc, "InvalidNetworkInterfaceID.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


CLEANUP_ACTIVITIES = [
    cluster_sweep.sweep_cluster_resources,
    terminate_cluster_instances,
    revoke_security_group_references,
    delete_volume,
    delete_network_interface,
    describe_blockers,
]
