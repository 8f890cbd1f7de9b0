"""The results of a round written back under the world's lock: Service status and finalizers, PVs
created and bound, volumes deleted, the cluster's cloud status (a mixin of `CloudControllers`)."""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Any

from capt.dev.simulator import storage
from capt.dev.simulator.cloud_controllers.names import (
    EBS_DRIVER,
    IN_TREE_EBS,
    MIGRATED_TO,
    PROVISIONED_BY,
    PROVISIONER_FINALIZER,
    SERVICE_FINALIZER,
    ZONE_LABEL,
    load_balancer_name,
)
from capt.dev.simulator.cloud_controllers.work import (
    ClusterWork,
    ProvisionWork,
    Results,
    _is_ours,
    pv_volume_id,
)
from capt.dev.simulator.world.state import Cluster, rfc3339

log = logging.getLogger("capt.simulator")


class WriteBackMixin:
    """The write-back steps of `CloudControllers`."""

    # -- write back (under the lock) -------------------------------------------------------------

    def _write_back(self, cluster: Cluster, work: ClusterWork, results: Results) -> None:
        now = rfc3339(self.world.now())
        for key, (uid, hostname) in results.hostnames.items():
            svc = cluster.objects.get(key)
            if svc is None or str((svc.get("metadata") or {}).get("uid")) != uid or storage.deleting(svc):
                continue
            ingress = [{"hostname": hostname}] if hostname else []
            status = svc.setdefault("status", {})
            if (status.get("loadBalancer") or {}).get("ingress") != ingress:
                status["loadBalancer"] = {"ingress": ingress}
                storage.touch(cluster, svc)
        for key, uid in results.lbs_deleted.items():
            svc = cluster.objects.get(key)
            if svc is None or str((svc.get("metadata") or {}).get("uid")) != uid:
                continue
            if not storage.deleting(svc):
                svc["status"] = {"loadBalancer": {}}
            storage.remove_finalizer(cluster, key, SERVICE_FINALIZER)
        for item in work.binds:
            self._bind(cluster, item.pvc_key, item.pvc_uid, item.pv)
        for item, volume_id in results.provisioned:
            self._create_pv(cluster, item, volume_id, now)
            self._bind(cluster, item.pvc_key, item.pvc_uid, item.pv)
        for item in results.volumes_deleted:
            key = storage.key_of(storage.PVS, "", item.pv)
            pv = cluster.objects.get(key)
            if pv is not None and str((pv.get("metadata") or {}).get("uid")) == item.pv_uid:
                del cluster.objects[key]  # the external-provisioner deletes the PV once the volume is gone
        self._status(cluster, work)

    def _create_pv(self, cluster: Cluster, item: ProvisionWork, volume_id: str, now: str | None) -> None:
        key = storage.key_of(storage.PVS, "", item.pv)
        if key in cluster.objects:
            return
        pvc = cluster.objects.get(item.pvc_key) or {}
        annotations = {PROVISIONED_BY: IN_TREE_EBS if item.in_tree else EBS_DRIVER}
        spec: dict[str, Any] = {
            "accessModes": list(item.access_modes),
            "capacity": {"storage": f"{item.size_gib}Gi"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": item.pvc_key[2],
                "name": item.pvc_key[3],
                "uid": item.pvc_uid,
                "resourceVersion": (pvc.get("metadata") or {}).get("resourceVersion", ""),
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [item.zone]}]}
                    ]
                }
            },
            "persistentVolumeReclaimPolicy": item.reclaim_policy,
            "storageClassName": item.class_name,
            "volumeMode": item.volume_mode,
        }
        if item.in_tree:
            annotations[MIGRATED_TO] = EBS_DRIVER
            spec["awsElasticBlockStore"] = {
                "volumeID": f"aws://{item.zone}/{volume_id}",
                "fsType": item.fs_type,
            }
        else:
            spec["csi"] = {
                "driver": EBS_DRIVER,
                "fsType": item.fs_type,
                "volumeHandle": volume_id,
                "volumeAttributes": {
                    "storage.kubernetes.io/csiProvisionerIdentity": f"1700000000000-8081-{EBS_DRIVER}"
                },
            }
        cluster.objects[key] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": item.pv,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now,
                "resourceVersion": str(cluster.next_rv()),
                "annotations": annotations,
                "finalizers": [storage.PV_PROTECTION, PROVISIONER_FINALIZER],
            },
            "spec": spec,
            "status": {"phase": "Bound"},
        }

    def _bind(self, cluster: Cluster, pvc_key: tuple, pvc_uid: str, pv_name_: str) -> None:
        """The PV controller binds the claim to the PV provisioned for it."""
        pvc = cluster.objects.get(pvc_key)
        pv = cluster.objects.get(storage.key_of(storage.PVS, "", pv_name_))
        if pvc is None or pv is None or str((pvc.get("metadata") or {}).get("uid")) != pvc_uid:
            return
        if (pvc.get("spec") or {}).get("volumeName") == pv_name_:
            return
        pv_spec = pv.get("spec") or {}
        provisioner = ((pv.get("metadata") or {}).get("annotations") or {}).get(PROVISIONED_BY, EBS_DRIVER)
        pvc.setdefault("spec", {})["volumeName"] = pv_name_
        annotations = storage.meta(pvc).setdefault("annotations", {})
        annotations.update(
            {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.kubernetes.io/storage-provisioner": EBS_DRIVER
                if provisioner == IN_TREE_EBS
                else provisioner,
                "volume.beta.kubernetes.io/storage-provisioner": provisioner,
            }
        )
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": list(pv_spec.get("accessModes") or []),
            "capacity": copy.deepcopy(pv_spec.get("capacity") or {}),
        }
        storage.touch(cluster, pvc)
        log.info("cluster %s: %s/%s bound to %s", cluster.name, pvc_key[2], pvc_key[3], pv_name_)

    def _status(self, cluster: Cluster, work: ClusterWork) -> None:
        ctx = work.context
        lbs = {}
        for key, svc in storage.items(cluster, storage.SERVICES):
            if SERVICE_FINALIZER in storage.finalizers(svc):
                lbs[f"{key[2]}/{key[3]}"] = load_balancer_name(str((svc.get("metadata") or {}).get("uid")))
        volumes = {
            key[3]: pv_volume_id(pv) for key, pv in storage.items(cluster, storage.PVS) if _is_ours(pv)
        }
        cluster.cloud = {
            "cluster_id": ctx.tagging.cluster_id if ctx.tagging else None,
            "vpc_id": ctx.vpc_id,
            "region": ctx.region,
            "error": ctx.error,
            "ccm": "up" if work.ccm else ("down" if ctx.tagging else "not started"),
            "csi": "up" if work.csi else "down",
            "load_balancers": lbs,
            "volumes": volumes,
        }
