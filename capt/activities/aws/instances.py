"""EC2 instances for machines: launch, describe, terminate, and the API load balancer.

`ensure_instance` is what makes "one machine, one instance" hold under retries:

1. Look the machine's instance up by tags — the cluster's `owned` tag and the machine tag, in
   any state but `terminated` (client-side checked too: emulators ignore some filters). Found:
   return it, launch nothing.
2. Otherwise RunInstances with a deterministic ClientToken derived from cluster, machine and
   the machine's *incarnation* (a number the workflow bumps for a replacement of the same
   machine name: AWS will not launch a new instance for a token a terminated instance used).
   Tags ride on the create call (TagSpecifications), so there is no moment when the instance
   exists untagged. If the response is lost, a retry finds the instance by its tags (step 1),
   or — while DescribeInstances does not show it yet — the token makes RunInstances return
   the same instance instead of launching a second.

Defaults stricter than CAPA's (both overridable in the AWSMachineTemplate): IMDSv2 required
with a hop limit of 1 (containers cannot reach the node's credentials), and an encrypted gp3
root volume.

The user data is only the boothook rendered by `activities.kubeadm.bootstrap.render_user_data`
from the bootstrap secrets' name prefix and chunk count: this activity never sees key material
or a token (the cloud-config holding them waits in Secrets Manager).

Every activity takes and returns a small model (ids, states, addresses — never an API
response) and reports its AWS calls per operation in `aws_calls`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import iam, images, session, tags
from capt.activities.aws.client_tokens import client_token
from capt.activities.aws.errors import CaptAwsError, NotOwnedError, NotYetVisibleError, is_code
from capt.activities.aws.models import AwsResult
from capt.activities.kubeadm.cloud_init import render_user_data
from capt.rules.base import Frozen
from capt.spec.models import AMISelector, MachineTemplate

# "worker" is the machine workflows' word for what CAPA tags as "node".
InstanceRole = Literal["control-plane", "node", "worker"]
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
GONE = "gone"
NOT_FOUND_CODES = ("InvalidInstanceID.NotFound",)


class ClientTokenSpentError(CaptAwsError):
    """The incarnation's ClientToken already launched an instance that is now terminated."""


def tag_role(role: InstanceRole) -> str:
    return tags.ROLE_CONTROL_PLANE if role == "control-plane" else tags.ROLE_NODE


def default_instance_profile(role: InstanceRole) -> str:
    """The profile `capt bootstrap iam` creates for the role, when the template names none."""
    return iam.CONTROL_PLANE_PROFILE if role == "control-plane" else iam.NODES_PROFILE


# --------------------------------------------------------------------------------------------
# models


class InstanceRequest(Frozen):
    """One machine's instance. Ids come from the infrastructure workflow; the template is the
    AWSMachineTemplate's spec; the bootstrap fields name the secrets, never their content."""

    region: str
    cluster_name: str
    namespace: str = "default"
    machine_name: str
    role: InstanceRole
    # Bumped by the workflow for every replacement instance of the same machine name.
    incarnation: int = 0
    availability_zone: str | None = None
    subnet_id: str
    security_group_ids: tuple[str, ...]
    template: MachineTemplate
    kubernetes_version: str
    # An AMI already resolved by `images.lookup_image` (recommended: it pins the image for
    # every retry); otherwise the template's selector is resolved here.
    image_id: str | None = None
    ssh_key_name: str | None = None
    bootstrap_secret_prefix: str | None = None
    bootstrap_chunks: int = 0
    # Secrets Manager endpoint for the boothook when it is not the region's default.
    bootstrap_endpoint_url: str | None = None
    additional_tags: tuple[tuple[str, str], ...] = ()
    # The cluster's id in AWS (contracts.names.cluster_id): the instance is tagged as owned by it and
    # found by it. None (requests recorded before ids were namespaced): the cluster's name.
    cluster_id: str | None = None

    @property
    def owner(self) -> str:
        return self.cluster_id or self.cluster_name


class InstanceInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_id: str
    state: str
    machine_name: str = ""
    role: str = ""
    availability_zone: str | None = None
    subnet_id: str | None = None
    private_ip: str | None = None
    private_dns_name: str | None = None
    launch_time: dt.datetime | None = None
    image_id: str | None = None
    instance_type: str | None = None


class InstanceResult(AwsResult, InstanceInfo):
    created: bool = False
    client_token: str = ""


class DescribeInstanceRequest(Frozen):
    region: str
    instance_id: str


class DescribeInstanceResult(AwsResult):
    """`found=False, state="gone"` when EC2 does not know the id (terminated long ago — or, for a
    few seconds after RunInstances, not visible yet)."""

    instance_id: str
    found: bool
    state: str
    instance: InstanceInfo | None = None


class MachineInstanceLookup(Frozen):
    """The live instance of one machine, found by its tags (the cluster's owned tag and the
    machine tag): for deleting a machine whose workflow closed before it recorded the id."""

    region: str
    cluster_name: str
    machine_name: str


class MachineInstanceResult(AwsResult):
    instance: InstanceInfo | None = None


class TerminateInstanceRequest(Frozen):
    region: str
    instance_id: str
    # When given, an instance not owned by this cluster is refused (never terminated): its id
    # (contracts.names.cluster_id) or, for a cluster created before ids were namespaced, its name.
    cluster_name: str | None = None
    cluster_id: str | None = None

    @property
    def owner(self) -> str | None:
        return self.cluster_id or self.cluster_name


class TerminateInstanceResult(AwsResult):
    instance_id: str
    state: str
    already_gone: bool = False


class ClusterInstancesRequest(Frozen):
    region: str
    cluster_name: str
    include_terminated: bool = False
    # The cluster's id in AWS; None (recorded before ids were namespaced): the name.
    cluster_id: str | None = None

    @property
    def owner(self) -> str:
        return self.cluster_id or self.cluster_name


class ClusterInstancesResult(AwsResult):
    instances: tuple[InstanceInfo, ...] = ()


# --------------------------------------------------------------------------------------------
# pure parts


def instance_token(req: InstanceRequest) -> str:
    """Same for every retry of one incarnation; different for the next incarnation, another
    machine, another cluster or namespace."""
    return client_token(
        "instance", req.cluster_name, req.machine_name, str(req.incarnation), scope=req.namespace
    )


def instance_tags(req: InstanceRequest) -> dict[str, str]:
    return tags.build(
        req.owner,
        req.machine_name,
        tag_role(req.role),
        additional=tuple(req.additional_tags) + tuple(req.template.additional_tags),
        extra={tags.MACHINE_TAG: req.machine_name},
    )


def block_device_mappings(template: MachineTemplate, root_device_name: str) -> list[dict]:
    rv = template.root_volume
    ebs: dict[str, Any] = {
        "VolumeSize": rv.size_gib,
        "VolumeType": rv.type,
        "Encrypted": rv.encrypted,
        "DeleteOnTermination": True,
    }
    if rv.iops is not None:
        ebs["Iops"] = rv.iops
    if rv.throughput is not None:
        ebs["Throughput"] = rv.throughput
    return [{"DeviceName": root_device_name, "Ebs": ebs}]


def user_data(req: InstanceRequest) -> str | None:
    if not req.bootstrap_secret_prefix:
        return None
    return render_user_data(
        secret_prefix=req.bootstrap_secret_prefix,
        chunks=req.bootstrap_chunks,
        region=req.region,
        endpoint_url=req.bootstrap_endpoint_url,
    )


def run_instances_params(req: InstanceRequest, image: images.ImageChoice) -> dict[str, Any]:
    """RunInstances' parameters. Deterministic for a request and image: a retry with the same
    ClientToken must send the same parameters, or EC2 answers IdempotentParameterMismatch."""
    t = req.template
    resource_tags = instance_tags(req)
    params: dict[str, Any] = {
        "ImageId": image.image_id,
        "InstanceType": t.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": instance_token(req),
        "IamInstanceProfile": {"Name": t.iam_instance_profile or default_instance_profile(req.role)},
        "MetadataOptions": {
            "HttpEndpoint": "enabled",
            "HttpTokens": t.http_tokens,
            "HttpPutResponseHopLimit": t.http_put_response_hop_limit,
            "InstanceMetadataTags": "disabled",
        },
        "BlockDeviceMappings": block_device_mappings(t, image.root_device_name or "/dev/sda1"),
        "TagSpecifications": [
            *tags.specification("instance", resource_tags),
            *tags.specification("volume", resource_tags),
            *tags.specification("network-interface", resource_tags),
        ],
    }
    groups = list(dict.fromkeys(req.security_group_ids))
    if t.public_ip:
        params["NetworkInterfaces"] = [
            {"DeviceIndex": 0, "SubnetId": req.subnet_id, "Groups": groups, "AssociatePublicIpAddress": True}
        ]
    else:
        params["SubnetId"] = req.subnet_id
        params["SecurityGroupIds"] = groups
    key = req.ssh_key_name or t.ssh_key_name
    if key:
        params["KeyName"] = key
    if t.spot:
        params["InstanceMarketOptions"] = {"MarketType": "spot"}
    data = user_data(req)
    if data is not None:
        params["UserData"] = data
    return params


def info(instance: dict[str, Any]) -> InstanceInfo:
    t = tags.as_dict(instance.get("Tags"))
    return InstanceInfo(
        instance_id=instance["InstanceId"],
        state=instance.get("State", {}).get("Name", "unknown"),
        machine_name=t.get(tags.MACHINE_TAG, ""),
        role=t.get(tags.ROLE_TAG, ""),
        availability_zone=instance.get("Placement", {}).get("AvailabilityZone"),
        subnet_id=instance.get("SubnetId"),
        private_ip=instance.get("PrivateIpAddress"),
        private_dns_name=instance.get("PrivateDnsName") or None,
        launch_time=instance.get("LaunchTime"),
        image_id=instance.get("ImageId"),
        instance_type=instance.get("InstanceType"),
    )


def pick_machine_instance(instances: Iterable[dict[str, Any]], cluster: str, machine: str) -> dict | None:
    """The live instance the cluster owns for `machine`: the earliest launched if (out of band)
    there are several, so every retry settles on the same one."""
    mine = [
        i
        for i in instances
        if tags.is_owned(tags.as_dict(i.get("Tags")), cluster)
        and tags.as_dict(i.get("Tags")).get(tags.MACHINE_TAG) == machine
        and i.get("State", {}).get("Name") in LIVE_STATES
    ]
    if not mine:
        return None
    return min(
        mine, key=lambda i: (i.get("LaunchTime") or dt.datetime.max.replace(tzinfo=dt.UTC), i["InstanceId"])
    )


def _instances(pages: Iterable[dict]) -> list[dict]:
    return [i for page in pages for r in page.get("Reservations", []) for i in r.get("Instances", [])]


# --------------------------------------------------------------------------------------------
# AWS helpers


def find_machine_instance(ec2: Any, cluster: str, machine: str) -> dict | None:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            tags.owned_filter(cluster),
            tags.machine_filter(machine),
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]
    )
    return pick_machine_instance(_instances(pages), cluster, machine)


def _describe(ec2: Any, instance_id: str) -> dict | None:
    try:
        found = _instances([ec2.describe_instances(InstanceIds=[instance_id])])
    except Exception as err:
        if is_code(err, *NOT_FOUND_CODES):
            return None
        raise
    return found[0] if found else None


def _launch(ec2: Any, req: InstanceRequest) -> tuple[dict, bool]:
    """(instance, created). Handles a ClientToken that EC2 already knows."""
    image = (
        images.resolve_image(ec2, AMISelector(id=req.image_id), req.kubernetes_version)
        if req.image_id
        else images.resolve_image(ec2, req.template.ami, req.kubernetes_version, req.template.instance_type)
    )
    params = run_instances_params(req, image)
    try:
        instance = ec2.run_instances(**params)["Instances"][0]
    except Exception as err:
        if not is_code(err, "IdempotentParameterMismatch"):
            raise
        # The token launched something with other parameters (e.g. a newer AMI resolved on an
        # earlier attempt): that instance is ours; find it by its token.
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "client-token", "Values": [params["ClientToken"]]}]
        )
        by_token = _instances(pages)
        live = [i for i in by_token if i.get("State", {}).get("Name") in LIVE_STATES]
        if live:
            return live[0], False
        if by_token:
            raise ClientTokenSpentError(
                f"{req.machine_name} incarnation {req.incarnation}: its ClientToken launched "
                f"{by_token[0]['InstanceId']}, now terminated; a replacement needs a new incarnation"
            ) from None
        raise NotYetVisibleError(
            f"RunInstances token for {req.machine_name} is in use but not visible yet"
        ) from None
    state = instance.get("State", {}).get("Name")
    if state not in LIVE_STATES:
        # EC2 returned an earlier launch for this token, and it is gone.
        raise ClientTokenSpentError(
            f"{req.machine_name} incarnation {req.incarnation}: its ClientToken belongs to "
            f"{instance['InstanceId']} ({state}); a replacement needs a new incarnation"
        )
    return instance, True


# --------------------------------------------------------------------------------------------
# activities


@session.aws_activity
def ensure_instance(req: InstanceRequest) -> InstanceResult:
    """The machine's instance: found by tags, or launched (once per incarnation)."""
    ec2 = session.client("ec2", req.region)
    instance = find_machine_instance(ec2, req.owner, req.machine_name)
    created = False
    if instance is None:
        instance, created = _launch(ec2, req)
        # EC2 reads are eventually consistent: wait (briefly) until DescribeInstances knows the
        # new id, so the workflow's next describe_instance cannot mistake it for "gone".
        ec2.get_waiter("instance_exists").wait(
            InstanceIds=[instance["InstanceId"]], WaiterConfig={"Delay": 2, "MaxAttempts": 10}
        )
    return InstanceResult(**info(instance).model_dump(), created=created, client_token=instance_token(req))


@session.aws_activity
def describe_instance(req: DescribeInstanceRequest) -> DescribeInstanceResult:
    """State and addresses of one instance; an unknown id is `found=False, state="gone"`."""
    instance = _describe(session.client("ec2", req.region), req.instance_id)
    if instance is None:
        return DescribeInstanceResult(instance_id=req.instance_id, found=False, state=GONE)
    found = info(instance)
    return DescribeInstanceResult(instance_id=req.instance_id, found=True, state=found.state, instance=found)


@session.aws_activity
def lookup_machine_instance(req: MachineInstanceLookup) -> MachineInstanceResult:
    """The machine's live instance by tags (not terminated), or none."""
    found = find_machine_instance(session.client("ec2", req.region), req.cluster_name, req.machine_name)
    return MachineInstanceResult(instance=info(found) if found is not None else None)


@session.aws_activity
def terminate_instance(req: TerminateInstanceRequest) -> TerminateInstanceResult:
    """Terminate; an instance already terminated or unknown counts as done."""
    ec2 = session.client("ec2", req.region)
    owner = req.owner
    if owner is not None:
        current = _describe(ec2, req.instance_id)
        if current is None:
            return TerminateInstanceResult(instance_id=req.instance_id, state=GONE, already_gone=True)
        if not tags.is_owned(tags.as_dict(current.get("Tags")), owner):
            raise NotOwnedError(
                f"instance {req.instance_id} is not tagged {tags.cluster_key(owner)}={tags.OWNED}; "
                "capt will not terminate it"
            )
        if current.get("State", {}).get("Name") == "terminated":
            return TerminateInstanceResult(instance_id=req.instance_id, state="terminated", already_gone=True)
    try:
        changes = ec2.terminate_instances(InstanceIds=[req.instance_id])["TerminatingInstances"]
    except Exception as err:
        if is_code(err, *NOT_FOUND_CODES):
            return TerminateInstanceResult(instance_id=req.instance_id, state=GONE, already_gone=True)
        raise
    change = changes[0] if changes else {}
    before = change.get("PreviousState", {}).get("Name")
    return TerminateInstanceResult(
        instance_id=req.instance_id,
        state=change.get("CurrentState", {}).get("Name", "shutting-down"),
        already_gone=before in ("shutting-down", "terminated"),
    )


@session.aws_activity
def describe_cluster_instances(req: ClusterInstancesRequest) -> ClusterInstancesResult:
    """Every instance the cluster owns, in one paginated DescribeInstances (for health checks)."""
    ec2 = session.client("ec2", req.region)
    filters = [tags.owned_filter(req.owner)]
    if not req.include_terminated:
        filters.append({"Name": "instance-state-name", "Values": list(LIVE_STATES)})
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    found = [
        info(i)
        for i in _instances(pages)
        if tags.is_owned(tags.as_dict(i.get("Tags")), req.owner)
        and (req.include_terminated or i.get("State", {}).get("Name") in LIVE_STATES)
    ]
    return ClusterInstancesResult(
        instances=tuple(sorted(found, key=lambda i: (i.machine_name, i.instance_id)))
    )
