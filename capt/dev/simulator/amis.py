"""CAPA-style machine images for the emulated AWS (moto's `MOTO_AMIS_PATH`).

CAPA publishes its images from account 258751437250 as `capa-ami-<os>-v<version>-<stamp>`, and
capt's AMI lookup (capt/activities/aws/images.py) searches exactly that: owner, name pattern
`capa-ami-<os>-?<version>-*`, architecture, hvm, available, newest by CreationDate. moto's
RegisterImage cannot set an owner, a creation date or an architecture, but moto loads the images
of `MOTO_AMIS_PATH` (a JSON list, the fields of moto's own amis.json) into every region at start.
So `capt dev up` writes such a file with CAPA images for a broad version range — and moto's own
default images, which MOTO_AMIS_PATH would otherwise replace (the bastion's Ubuntu lookup needs
them) — and starts moto with it (capt/dev/simulator/motoserver.py).

Ids and dates are deterministic: the same version always has the same AMI id, and a later patch
release is newer than an earlier one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

CAPA_OWNER = "258751437250"
OPERATING_SYSTEMS = ("ubuntu-24.04", "ubuntu-22.04")
ARCHITECTURES = ("x86_64", "arm64")
MINORS = range(20, 36)  # v1.20 … v1.35
PATCHES = range(0, 21)  # .0 … .20
_EPOCH = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)


def ami_id(name: str, architecture: str) -> str:
    return "ami-" + hashlib.sha256(f"{name}/{architecture}".encode()).hexdigest()[:17]


def capa_image(os_name: str, version: str, architecture: str) -> dict:
    """One image as moto's loader takes it."""
    major, minor, patch = (int(x) for x in version.removeprefix("v").split("."))
    created = _EPOCH + dt.timedelta(days=30 * (minor - 20) + patch, hours=ARCHITECTURES.index(architecture))
    name = f"capa-ami-{os_name}-v{major}.{minor}.{patch}-{int(created.timestamp())}"
    return {
        "ami_id": ami_id(name, architecture),
        "name": name,
        "description": f"Cluster API AMI for Kubernetes v{major}.{minor}.{patch} on {os_name} ({architecture})",
        "owner_id": CAPA_OWNER,
        "public": True,
        "virtualization_type": "hvm",
        "architecture": architecture,
        "state": "available",
        "platform": None,
        "image_type": "machine",
        "hypervisor": "xen",
        "root_device_name": "/dev/sda1",
        "root_device_type": "ebs",
        "sriov": "simple",
        "creation_date": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "tags": {},
    }


def capa_images(
    minors: Iterable[int] = MINORS,
    patches: Iterable[int] = PATCHES,
    operating_systems: Iterable[str] = OPERATING_SYSTEMS,
    architectures: Iterable[str] = ARCHITECTURES,
) -> list[dict]:
    patches = list(patches)
    operating_systems = list(operating_systems)
    architectures = list(architectures)
    return [
        capa_image(os_name, f"v1.{minor}.{patch}", arch)
        for minor in minors
        for patch in patches
        for os_name in operating_systems
        for arch in architectures
    ]


def moto_default_images(regions: Iterable[str]) -> list[dict]:
    """moto's built-in images (amis.json and the regions' latest_amis), which it skips when
    MOTO_AMIS_PATH is set."""
    from moto.utilities.utils import load_resource

    images: dict[str, dict] = {a["ami_id"]: a for a in load_resource("ec2/resources/amis.json")}
    for region in regions:
        try:
            for a in load_resource(f"ec2/resources/latest_amis/{region}.json"):
                images.setdefault(a["ami_id"], a)
        except FileNotFoundError:
            pass
    return list(images.values())


def write_amis_file(path: Path, regions: Iterable[str] = ()) -> int:
    """Write the MOTO_AMIS_PATH file; returns the number of images."""
    images = capa_images()
    seen = {i["ami_id"] for i in images}
    images += [i for i in moto_default_images(regions) if i["ami_id"] not in seen]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(images, default=str))
    tmp.replace(path)
    return len(images)
