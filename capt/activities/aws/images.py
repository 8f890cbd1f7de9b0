"""AMI selection: an explicit image id, or CAPA's lookup by name pattern and owner.

CAPA's default lookup (AWSMachineTemplate `spec.ami` empty, `imageLookup*` on the cluster or
machine): DescribeImages owned by the lookup org (CAPA's own account unless overridden), whose
name matches `capa-ami-<base os>-?<kubernetes version>-*` (the `?` swallows the optional "v"),
for the instance type's architecture, hvm, `available` — and of those the newest by
CreationDate. When nothing matches, the machine cannot be built however often we retry, so the
activity fails with a non-retryable error that says what was searched for.

The pure parts (architecture of an instance type, newest of a list) are separate functions
with table tests; `resolve_image` is the AWS call, used by `lookup_image` and by
`instances.ensure_instance` when it is not handed a resolved id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import session
from capt.activities.aws.errors import CaptAwsError
from capt.activities.aws.models import AwsResult
from capt.rules.base import Frozen
from capt.spec.models import AMISelector


class ImageNotFoundError(CaptAwsError):
    """No image matches the lookup: a manifest or account problem, not worth retrying."""


# Graviton families carry a "g" after the generation digit (t4g, m7gd, c6gn, im4gn, x2gd,
# g5g, hpc7g); a1 is the first Graviton generation.
_FAMILY = re.compile(r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<options>[a-z-]*)$")


def architecture_for(instance_type: str | None) -> str:
    """The AMI architecture an instance type boots: `arm64` for Graviton, else `x86_64`."""
    if not instance_type:
        return "x86_64"
    family = instance_type.split(".", 1)[0].lower()
    if family == "a1":
        return "arm64"
    m = _FAMILY.match(family)
    if m and "g" in m.group("options"):
        return "arm64"
    return "x86_64"


def newest(images: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The image with the latest CreationDate (ISO 8601 strings sort chronologically).

    Ties (images registered in the same second) break on name, then id, so every call picks
    the same one.
    """
    return max(images, key=_age, default=None)


def _age(image: dict[str, Any]) -> tuple[str, str, str]:
    return (image.get("CreationDate") or "", image.get("Name") or "", image.get("ImageId") or "")


class ImageChoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    image_id: str
    name: str | None = None
    creation_date: str | None = None
    owner_id: str | None = None
    # Where the image's root volume attaches (/dev/sda1 on Ubuntu, /dev/xvda on Amazon Linux):
    # the root-volume block device mapping must name it.
    root_device_name: str | None = None
    looked_up: bool = False


def lookup_filters(selector: AMISelector, kubernetes_version: str, instance_type: str | None) -> list[dict]:
    return [
        {"Name": "name", "Values": [selector.name_pattern(kubernetes_version)]},
        {"Name": "architecture", "Values": [architecture_for(instance_type)]},
        {"Name": "state", "Values": ["available"]},
        {"Name": "virtualization-type", "Values": ["hvm"]},
    ]


def resolve_image(
    ec2: Any, selector: AMISelector, kubernetes_version: str, instance_type: str | None = None
) -> ImageChoice:
    """The selector's explicit image, or the newest image its lookup matches. One DescribeImages
    either way: an explicit id is read too, for its root device name (and an id that does not
    exist fails here, non-retryably, as InvalidAMIID.NotFound)."""
    if selector.id:
        found = ec2.describe_images(ImageIds=[selector.id]).get("Images", [])
        if not found:
            raise ImageNotFoundError(f"AMI {selector.id} does not exist or is not visible to this account")
        return _choice(found[0], looked_up=False)
    filters = lookup_filters(selector, kubernetes_version, instance_type)
    images = ec2.describe_images(Owners=[selector.lookup_org], Filters=filters).get("Images", [])
    # Emulators may ignore a filter: keep only what the filters asked for.
    wanted = {f["Name"]: f["Values"][0] for f in filters if f["Name"] != "name"}
    images = [
        i
        for i in images
        if i.get("State", "available") == wanted["state"]
        and i.get("Architecture", wanted["architecture"]) == wanted["architecture"]
    ]
    best = newest(images)
    if best is None:
        raise ImageNotFoundError(
            f"no AMI named like {selector.name_pattern(kubernetes_version)!r} owned by {selector.lookup_org} "
            f"({architecture_for(instance_type)}, hvm, available) for Kubernetes {kubernetes_version}; "
            "set the AWSMachineTemplate's spec.ami.id, or imageLookupFormat/Org/BaseOS to an image that exists"
        )
    return _choice(best, looked_up=True)


def _choice(image: dict[str, Any], *, looked_up: bool) -> ImageChoice:
    return ImageChoice(
        image_id=image["ImageId"],
        name=image.get("Name"),
        creation_date=image.get("CreationDate"),
        owner_id=image.get("OwnerId"),
        root_device_name=image.get("RootDeviceName"),
        looked_up=looked_up,
    )


# --------------------------------------------------------------------------------------------
# the activity


class ImageLookupRequest(Frozen):
    region: str
    ami: AMISelector = AMISelector()
    kubernetes_version: str
    instance_type: str | None = None


class ImageLookupResult(AwsResult):
    image: ImageChoice


@session.aws_activity
def lookup_image(req: ImageLookupRequest) -> ImageLookupResult:
    """Resolve the machine template's AMI once, so the workflow can keep the id it boots."""
    ec2 = session.client("ec2", req.region)
    return ImageLookupResult(image=resolve_image(ec2, req.ami, req.kubernetes_version, req.instance_type))
