"""What kube-apiserver and kube-controller-manager do to Services, PersistentVolumeClaims and
PersistentVolumes in the simulator's generic object store (simulator.resources), with no I/O.

- Finalizers: DELETE of an object with `metadata.finalizers` only sets `deletionTimestamp`; the
  object goes once the last finalizer is removed (`remove_finalizer`).
- Admission, on create: a PVC without `storageClassName` gets the default StorageClass's name
  (DefaultStorageClass) and every PVC/PV its protection finalizer (StorageObjectInUseProtection);
  a Service of type LoadBalancer/NodePort gets node ports and every Service a cluster IP.
- `tick` (kube-controller-manager, every simulator tick): the pvc-protection controller lets a
  deleting PVC go once no scheduled pod uses it; the pv-protection controller lets a deleting PV
  go once it is not bound; the PV controller marks a PV whose claim is gone `Released`.

The AWS side (ELBs, EBS volumes) is simulator.cloud_controllers.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from capt.dev.simulator.world.state import Cluster

SERVICES = ("v1", "services")
PVCS = ("v1", "persistentvolumeclaims")
PVS = ("v1", "persistentvolumes")
STORAGE_CLASSES = ("storage.k8s.io/v1", "storageclasses")
DEPLOYMENTS = ("apps/v1", "deployments")

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
NODE_PORT_RANGE = (30000, 32767)
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
# Fields the API server or a controller owns: a server-side apply by a user keeps them.
BINDING_ANNOTATIONS = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)


def items(cluster: Cluster, kind: tuple[str, str]) -> list[tuple[tuple[str, str, str, str], dict]]:
    """(key, object) of one kind, sorted by namespace and name."""
    return sorted((k, o) for k, o in cluster.objects.items() if k[:2] == kind)


def key_of(kind: tuple[str, str], namespace: str, name: str) -> tuple[str, str, str, str]:
    return (kind[0], kind[1], namespace, name)


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


def deleting(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def finalizers(obj: dict) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def touch(cluster: Cluster, obj: dict) -> None:
    meta(obj)["resourceVersion"] = str(cluster.next_rv())


def add_finalizer(cluster: Cluster, obj: dict, finalizer: str) -> bool:
    if finalizer in finalizers(obj):
        return False
    meta(obj)["finalizers"] = [*finalizers(obj), finalizer]
    touch(cluster, obj)
    return True


def remove_finalizer(cluster: Cluster, key: tuple[str, str, str, str], finalizer: str) -> bool:
    """Drop one finalizer; a deleting object without finalizers left is removed. True if the
    object is gone."""
    obj = cluster.objects.get(key)
    if obj is None:
        return True
    rest = [f for f in finalizers(obj) if f != finalizer]
    if rest != finalizers(obj):
        if rest:
            meta(obj)["finalizers"] = rest
        else:
            meta(obj).pop("finalizers", None)
        touch(cluster, obj)
    if deleting(obj) and not rest:
        del cluster.objects[key]
        return True
    return False


def request_delete(cluster: Cluster, key: tuple[str, str, str, str], now: str) -> dict | None:
    """DELETE as the API server does it: remove at once without finalizers, else set
    deletionTimestamp (once). Returns the object if it stays (being deleted), None if gone."""
    obj = cluster.objects.get(key)
    if obj is None:
        return None
    if not finalizers(obj):
        del cluster.objects[key]
        return None
    if not deleting(obj):
        meta(obj)["deletionTimestamp"] = now
        meta(obj)["deletionGracePeriodSeconds"] = 0
        touch(cluster, obj)
    return obj


# --------------------------------------------------------------------------------------------
# admission and server-owned fields


def default_storage_class(cluster: Cluster) -> str | None:
    """The newest default StorageClass's name, as the DefaultStorageClass admission picks it."""
    defaults = [
        ((o.get("metadata") or {}).get("creationTimestamp") or "", k[3])
        for k, o in items(cluster, STORAGE_CLASSES)
        if any(
            ((o.get("metadata") or {}).get("annotations") or {}).get(a) == "true"
            for a in DEFAULT_CLASS_ANNOTATIONS
        )
    ]
    return max(defaults)[1] if defaults else None


def admit(cluster: Cluster, kind: tuple[str, str], obj: dict, existing: dict | None) -> None:
    """Fill what the API server or its controllers own: on create, defaults and protection
    finalizers; on every apply, the fields a user's apply does not own (status, finalizers set by
    controllers, deletionTimestamp, allocated ports and IPs, binding)."""
    m = meta(obj)
    if existing is not None:
        old = existing.get("metadata") or {}
        merged = list(dict.fromkeys([*(m.get("finalizers") or []), *(old.get("finalizers") or [])]))
        if merged:
            m["finalizers"] = merged
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in old:
                m[field] = old[field]
        kept = {k: v for k, v in (old.get("annotations") or {}).items() if k in BINDING_ANNOTATIONS}
        if kept:
            m["annotations"] = {**kept, **(m.get("annotations") or {})}
    if kind not in (SERVICES, PVCS, PVS):
        return
    if existing is not None and "status" in existing:
        obj["status"] = existing["status"]
    else:
        obj.pop("status", None)
    spec = obj.setdefault("spec", {})
    old_spec = (existing or {}).get("spec") or {}
    if kind == SERVICES:
        _allocate_service(cluster, obj, old_spec)
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == PVCS:
        if existing is None and "storageClassName" not in spec:
            default = default_storage_class(cluster)
            if default is not None:
                spec["storageClassName"] = default
        elif "storageClassName" not in spec and "storageClassName" in old_spec:
            spec["storageClassName"] = old_spec["storageClassName"]
        if old_spec.get("volumeName") and not spec.get("volumeName"):
            spec["volumeName"] = old_spec["volumeName"]
        if existing is None:
            add_finalizer_quiet(obj, PVC_PROTECTION)
        obj.setdefault("status", {"phase": "Pending"})
    else:
        if old_spec.get("claimRef") and not spec.get("claimRef"):
            spec["claimRef"] = old_spec["claimRef"]
        if existing is None:
            add_finalizer_quiet(obj, PV_PROTECTION)
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        obj.setdefault("status", {"phase": "Available"})


def add_finalizer_quiet(obj: dict, finalizer: str) -> None:
    if finalizer not in finalizers(obj):
        meta(obj)["finalizers"] = [*finalizers(obj), finalizer]


def _allocate_service(cluster: Cluster, svc: dict, old_spec: dict) -> None:
    spec = svc["spec"]
    spec.setdefault("type", "ClusterIP")
    if spec.get("clusterIP") != "None":
        spec["clusterIP"] = spec.get("clusterIP") or old_spec.get("clusterIP") or _free_ip(cluster, svc)
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec["type"] not in ("NodePort", "LoadBalancer"):
        for port in spec.get("ports") or []:
            port.pop("nodePort", None)
        return
    old_ports = {
        (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []
    }
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if not port.get("nodePort"):
            port["nodePort"] = old_ports.get((port.get("port"), port["protocol"])) or _free_node_port(
                cluster, svc
            )


def _used(cluster: Cluster, svc: dict, pick: Any) -> set:
    uid = (svc.get("metadata") or {}).get("uid")
    out: set = set()
    for _, other in items(cluster, SERVICES):
        if (other.get("metadata") or {}).get("uid") != uid:
            out |= set(pick(other.get("spec") or {}))
    out |= set(pick(svc.get("spec") or {}))
    return out


def _free_node_port(cluster: Cluster, svc: dict) -> int:
    used = _used(cluster, svc, lambda s: [p.get("nodePort") for p in s.get("ports") or []])
    low, high = NODE_PORT_RANGE
    start = int(hashlib.sha256(str((svc.get("metadata") or {}).get("uid")).encode()).hexdigest(), 16)
    for i in range(high - low + 1):
        port = low + (start + i) % (high - low + 1)
        if port not in used:
            return port
    raise ValueError("the node port range is full")


def _free_ip(cluster: Cluster, svc: dict) -> str:
    used = _used(cluster, svc, lambda s: [s.get("clusterIP")])
    for i in range(10, SERVICE_CIDR.num_addresses - 1):
        ip = str(SERVICE_CIDR[i])
        if ip not in used:
            return ip
    raise ValueError("the service CIDR is full")


# --------------------------------------------------------------------------------------------
# kube-controller-manager


def claims_of(volumes: Iterable[dict]) -> tuple[str, ...]:
    """The PVC names a pod's volumes refer to."""
    return tuple(
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes
        if isinstance(v.get("persistentVolumeClaim"), dict) and v["persistentVolumeClaim"].get("claimName")
    )


def claim_users(cluster: Cluster, namespace: str, claim: str) -> list[str]:
    """Pods that use the claim as the pvc-protection controller counts them: scheduled, not gone."""
    return sorted(
        p.name
        for (ns, _), p in cluster.pods.items()
        if ns == namespace and p.node_name and claim in claims_of(p.volumes)
    )


def tick(cluster: Cluster) -> None:
    for key, pvc in items(cluster, PVCS):
        if deleting(pvc) and PVC_PROTECTION in finalizers(pvc) and not claim_users(cluster, key[2], key[3]):
            remove_finalizer(cluster, key, PVC_PROTECTION)
    for key, pv in items(cluster, PVS):
        claim = (pv.get("spec") or {}).get("claimRef") or {}
        status = pv.setdefault("status", {})
        if claim.get("uid"):
            pvc = cluster.objects.get(key_of(PVCS, claim.get("namespace", ""), claim.get("name", "")))
            bound = pvc is not None and (pvc.get("metadata") or {}).get("uid") == claim.get("uid")
            if not bound and status.get("phase") in ("Bound", "Pending", "Available", None):
                status["phase"] = "Released"
                touch(cluster, pv)
        if deleting(pv) and PV_PROTECTION in finalizers(pv) and status.get("phase") != "Bound":
            remove_finalizer(cluster, key, PV_PROTECTION)


def pv_zones(pv: dict) -> set[str]:
    """The zones a PV's node affinity allows (empty: any)."""
    zones: set[str] = set()
    terms = (
        (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
    ) or []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") in ("topology.kubernetes.io/zone", "topology.ebs.csi.aws.com/zone"):
                zones |= set(expr.get("values") or [])
    return zones


def schedulable_claims(cluster: Cluster, namespace: str, claims: tuple[str, ...]) -> tuple[bool, set[str]]:
    """Can a pod with these claims be scheduled (every claim exists and is not being deleted), and
    in which zones (empty set: any) its bound volumes live."""
    zones: set[str] = set()
    for claim in claims:
        pvc = cluster.objects.get(key_of(PVCS, namespace, claim))
        if pvc is None or deleting(pvc):
            return False, set()
        volume = (pvc.get("spec") or {}).get("volumeName")
        pv = cluster.objects.get(key_of(PVS, "", volume)) if volume else None
        if pv is not None:
            allowed = pv_zones(pv)
            if allowed:
                zones = allowed if not zones else zones & allowed
                if not zones:
                    return False, set()
    return True, zones
