"""The EBS CSI controller against the emulated AWS: create, attach, detach and delete volumes (a
mixin of `CloudControllers`)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from capt.dev.simulator.cloud_controllers.names import CSI_VOLUME_NAME_TAG, volume_client_token
from capt.dev.simulator.cloud_controllers.work import (
    CloudContext,
    ClusterWork,
    Pending,
    ProvisionWork,
    VolumeDeleteWork,
    _code,
    _tag_list,
)

log = logging.getLogger("capt.simulator")


class VolumeMixin:
    """The EBS CSI steps of `CloudControllers`."""

    # -- EBS CSI ------------------------------------------------------------------------------

    def _create_volume(self, ctx: CloudContext, item: ProvisionWork) -> str:
        ec2 = self._ec2(ctx)
        found = ec2.describe_volumes(Filters=[{"Name": f"tag:{CSI_VOLUME_NAME_TAG}", "Values": [item.pv]}])[
            "Volumes"
        ]
        if found:  # what AWS answers to a repeated ClientToken: the same volume
            return found[0]["VolumeId"]
        params: dict[str, Any] = {
            "AvailabilityZone": item.zone,
            "Size": item.size_gib,
            "VolumeType": item.volume_type,
            "Encrypted": item.encrypted,
            "ClientToken": volume_client_token(item.pv),
            "TagSpecifications": [{"ResourceType": "volume", "Tags": _tag_list(dict(item.tags))}],
        }
        if item.kms_key_id:
            params["KmsKeyId"] = item.kms_key_id
        if item.iops:
            params["Iops"] = item.iops
        if item.throughput:
            params["Throughput"] = item.throughput
        volume_id = ec2.create_volume(**params)["VolumeId"]
        log.info(
            "cluster %s: EBS CSI: created %s (%d GiB %s in %s) for %s/%s as %s",
            ctx.cluster_name,
            volume_id,
            item.size_gib,
            item.volume_type,
            item.zone,
            item.pvc_key[2],
            item.pvc_key[3],
            item.pv,
        )
        return volume_id

    def _attach_detach(self, work: ClusterWork) -> None:
        ctx = work.context
        ec2 = self._ec2(ctx)
        memo = {v: i for (k, v), i in self._attached.items() if k == ctx.cluster_key}
        for volume in sorted(set(work.attachments) | set(memo)):
            want = work.attachments.get(volume)
            if memo.get(volume) == want:
                continue
            retry_key = ("attach", ctx.cluster_key, volume)
            if not self._due(retry_key):
                continue
            try:
                described = ec2.describe_volumes(VolumeIds=[volume])["Volumes"]
                attached = (
                    {a["InstanceId"] for a in (described[0].get("Attachments") or [])} if described else set()
                )
                for instance in sorted(attached - {want}):
                    ec2.detach_volume(VolumeId=volume, InstanceId=instance)
                    log.info("cluster %s: EBS CSI: detached %s from %s", ctx.cluster_name, volume, instance)
                if want and want not in attached:
                    ec2.attach_volume(VolumeId=volume, InstanceId=want, Device=_device(volume))
                    log.info("cluster %s: EBS CSI: attached %s to %s", ctx.cluster_name, volume, want)
                if want:
                    self._attached[(ctx.cluster_key, volume)] = want
                else:
                    self._attached.pop((ctx.cluster_key, volume), None)
                self._succeeded(retry_key)
            except ClientError as err:
                if _code(err).startswith("InvalidVolume.NotFound"):
                    self._attached.pop((ctx.cluster_key, volume), None)
                    continue
                self._failed(retry_key, f"attach/detach of {volume}: {err}", ctx)
            except BotoCoreError as err:
                self._failed(retry_key, f"attach/detach of {volume}: {err}", ctx)

    def _delete_volume(self, ctx: CloudContext, item: VolumeDeleteWork) -> None:
        try:
            self._ec2(ctx).delete_volume(VolumeId=item.volume_id)
        except ClientError as err:
            if _code(err).startswith("InvalidVolume.NotFound"):
                return
            if _code(err) != "VolumeInUse":
                raise
            # Still attached though no pod uses it (e.g. the simulator restarted and forgot the
            # attachment): the external-attacher detaches it; deleting is retried next round.
            for volume in self._ec2(ctx).describe_volumes(VolumeIds=[item.volume_id])["Volumes"]:
                for attachment in volume.get("Attachments") or []:
                    self._ec2(ctx).detach_volume(VolumeId=item.volume_id, InstanceId=attachment["InstanceId"])
                    log.info(
                        "cluster %s: EBS CSI: detached %s from %s",
                        ctx.cluster_name,
                        item.volume_id,
                        attachment["InstanceId"],
                    )
            self._attached.pop((ctx.cluster_key, item.volume_id), None)
            raise Pending(f"{item.volume_id} was still attached (VolumeInUse)") from None
        log.info("cluster %s: EBS CSI: deleted %s (%s)", ctx.cluster_name, item.volume_id, item.pv)
        self._attached.pop((ctx.cluster_key, item.volume_id), None)


def _device(volume_id: str) -> str:
    """A device name in the driver's /dev/xvdaa../dev/xvdzz range."""
    digest = hashlib.sha256(volume_id.encode()).digest()
    return "/dev/xvd" + chr(ord("a") + digest[0] % 26) + chr(ord("a") + digest[1] % 26)
