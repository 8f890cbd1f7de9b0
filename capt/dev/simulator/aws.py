"""The simulator's view of the emulated AWS: one DescribeInstances per region per poll for every
cluster, and what a booting instance reads (its user data, its image, its bootstrap secrets).

Plain boto3 with the standard environment (AWS_ENDPOINT_URL → moto in the local stack). The
instance reads Secrets Manager at the endpoint its boothook names, or the standard one.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from capt.dev.simulator.world.state import ROLE_TAG, WATCHED_ROLES, ImageInfo, InstanceView

log = logging.getLogger("capt.simulator")
CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class Aws:
    def __init__(self, regions: list[str]) -> None:
        self.regions = regions
        self._session = boto3.session.Session()
        self._clients: dict[tuple, Any] = {}
        self._images: dict[str, ImageInfo | None] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def client(self, service: str, region: str, endpoint: str | None = None):
        key = (service, region, endpoint or "")
        with self._lock:
            c = self._clients.get(key)
            if c is None:
                c = self._session.client(
                    service, region_name=region, endpoint_url=endpoint or None, config=CONFIG
                )
                c.meta.events.register("before-send", self._count)
                self._clients[key] = c
            return c

    def _count(self, event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        self.calls[op] = self.calls.get(op, 0) + 1

    # -- polling --------------------------------------------------------------------------

    def describe_instances(self) -> list[InstanceView]:
        """Every capt machine instance in the watched regions (one paginated call per region)."""
        views: list[InstanceView] = []
        for region in self.regions:
            pages = (
                self.client("ec2", region)
                .get_paginator("describe_instances")
                .paginate(
                    Filters=[{"Name": f"tag:{ROLE_TAG}", "Values": list(WATCHED_ROLES)}],
                    PaginationConfig={"PageSize": 1000},
                )
            )
            for page in pages:
                for reservation in page.get("Reservations", []):
                    for instance in reservation.get("Instances", []):
                        view = InstanceView.from_ec2(instance, region)
                        if view is not None:
                            views.append(view)
        return views

    # -- BootIO ---------------------------------------------------------------------------

    def user_data(self, view: InstanceView) -> str | None:
        try:
            resp = self.client("ec2", view.region).describe_instance_attribute(
                InstanceId=view.instance_id, Attribute="userData"
            )
        except ClientError as err:
            if _code(err).startswith("InvalidInstanceID"):
                return None
            raise
        value = (resp.get("UserData") or {}).get("Value")
        return base64.b64decode(value).decode() if value else None

    def image(self, view: InstanceView) -> ImageInfo | None:
        if view.image_id in self._images:
            return self._images[view.image_id]
        try:
            images = (
                self.client("ec2", view.region).describe_images(ImageIds=[view.image_id]).get("Images", [])
            )
        except ClientError as err:
            if not _code(err).startswith("InvalidAMIID"):
                raise
            images = []
        info = (
            ImageInfo(
                name=images[0].get("Name") or "", architecture=images[0].get("Architecture") or "x86_64"
            )
            if images
            else None
        )
        self._images[view.image_id] = info
        return info

    def read_secret(self, region: str, endpoint: str, name: str) -> bytes | None:
        try:
            resp = self.client("secretsmanager", region, endpoint).get_secret_value(SecretId=name)
        except ClientError as err:
            if _code(err) in ("ResourceNotFoundException", "InvalidRequestException"):
                return None
            raise
        if "SecretBinary" in resp:
            return resp["SecretBinary"]
        return (resp.get("SecretString") or "").encode()

    def delete_secret(self, region: str, endpoint: str, name: str) -> None:
        try:
            self.client("secretsmanager", region, endpoint).delete_secret(
                SecretId=name, ForceDeleteWithoutRecovery=True
            )
        except ClientError as err:
            if _code(err) != "ResourceNotFoundException":
                raise
