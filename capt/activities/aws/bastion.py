"""The optional bastion host: one small instance in the first public subnet, SSH only from
the allowed CIDRs (its security group), IMDSv2 required.

RunInstances takes a ClientToken (derived in client_tokens), and lookup by Name and owned tag
comes first, so a retried create never starts a second bastion. Without an AMI in the
manifest the newest Canonical Ubuntu server image is used.
"""

from __future__ import annotations

from capt.activities.aws import tags
from capt.activities.aws.client_tokens import client_token
from capt.activities.aws.errors import ConflictError, is_code
from capt.activities.aws.models import AwsResult, ClusterRef
from capt.activities.aws.session import aws_activity, client
from capt.rules.base import Frozen

CANONICAL_OWNER = "099720109477"
UBUNTU_NAME = "ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*"
LIVE_STATES = ("pending", "running", "stopping", "stopped")


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


class EnsureBastionInput(_In):
    cluster: ClusterRef
    name: str
    instance_type: str
    ami: str | None
    subnet_id: str
    security_group_id: str
    ssh_key_name: str | None
    token_scope: str


class InstanceIdInput(_In):
    cluster: ClusterRef
    instance_id: str


class InstanceResult(AwsResult):
    instance_id: str
    state: str
    public_ip: str | None = None
    created: bool = False


def _ubuntu_ami(ec2) -> str:
    images = ec2.describe_images(
        Owners=[CANONICAL_OWNER],
        Filters=[{"Name": "name", "Values": [UBUNTU_NAME]}, {"Name": "state", "Values": ["available"]}],
    )["Images"]
    if not images:
        raise ConflictError(
            "no Canonical Ubuntu image found for the bastion; set bastion.ami in the manifest"
        )
    return max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))["ImageId"]


def _root_volume(ec2, image_id: str) -> dict:
    """The image's root device, re-declared encrypted gp3 at the image's own size (EBS needs the
    size or a snapshot id once the mapping is overridden)."""
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    image = images[0] if images else {}
    device = image.get("RootDeviceName") or "/dev/sda1"
    size = next(
        (
            m.get("Ebs", {}).get("VolumeSize")
            for m in image.get("BlockDeviceMappings", [])
            if m.get("DeviceName") == device
        ),
        None,
    )
    return {
        "DeviceName": device,
        "Ebs": {"VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True, "VolumeSize": size or 8},
    }


@aws_activity
def ensure_bastion(inp: EnsureBastionInput) -> InstanceResult:
    ec2 = client("ec2", inp.cluster.region)
    reservations = ec2.describe_instances(
        Filters=[tags.name_filter(inp.name), {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    )["Reservations"]
    found = [i for r in reservations for i in r["Instances"] if i["State"]["Name"] in LIVE_STATES]
    instance = tags.pick_owned(found, inp.cluster.name, inp.name, "instance", "InstanceId")
    created = instance is None
    if instance is None:
        bastion_tags = tags.build(
            inp.cluster.name, inp.name, tags.ROLE_BASTION, additional=inp.cluster.additional_tags
        )
        kwargs = {"KeyName": inp.ssh_key_name} if inp.ssh_key_name else {}
        image_id = inp.ami or _ubuntu_ami(ec2)
        instance = ec2.run_instances(
            ImageId=image_id,
            # The root volume encrypted (the account's default EBS key), as the machines' are.
            BlockDeviceMappings=[_root_volume(ec2, image_id)],
            InstanceType=inp.instance_type,
            MinCount=1,
            MaxCount=1,
            SubnetId=inp.subnet_id,
            SecurityGroupIds=[inp.security_group_id],
            ClientToken=client_token(
                "bastion", inp.cluster.name, inp.name, inp.subnet_id, scope=inp.token_scope
            ),
            MetadataOptions={
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": 1,
                "HttpEndpoint": "enabled",
            },
            TagSpecifications=tags.specification("instance", bastion_tags)
            + tags.specification("volume", bastion_tags),
            **kwargs,
        )["Instances"][0]
    return InstanceResult(
        instance_id=instance["InstanceId"],
        state=instance["State"]["Name"],
        public_ip=instance.get("PublicIpAddress"),
        created=created,
    )


@aws_activity
def describe_bastion(inp: InstanceIdInput) -> InstanceResult:
    """One read of an instance's state; the workflow polls this between durable timers."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        reservations = ec2.describe_instances(InstanceIds=[inp.instance_id])["Reservations"]
    except Exception as exc:
        if is_code(exc, "InvalidInstanceID.NotFound"):
            return InstanceResult(instance_id=inp.instance_id, state="terminated")
        raise
    instances = [i for r in reservations for i in r["Instances"]]
    if not instances:
        return InstanceResult(instance_id=inp.instance_id, state="terminated")
    i = instances[0]
    return InstanceResult(
        instance_id=i["InstanceId"], state=i["State"]["Name"], public_ip=i.get("PublicIpAddress")
    )


@aws_activity
def terminate_bastion(inp: InstanceIdInput) -> InstanceResult:
    ec2 = client("ec2", inp.cluster.region)
    try:
        out = ec2.terminate_instances(InstanceIds=[inp.instance_id])["TerminatingInstances"]
    except Exception as exc:
        if is_code(exc, "InvalidInstanceID.NotFound"):
            return InstanceResult(instance_id=inp.instance_id, state="terminated")
        raise
    return InstanceResult(
        instance_id=inp.instance_id, state=out[0]["CurrentState"]["Name"] if out else "terminated"
    )
