"""Before a cluster's AWS resources go: delete, through the workload cluster's API, the objects
that make Kubernetes' controllers hold AWS resources, so that they release them.

- **Services of `type: LoadBalancer`**: the AWS cloud-controller-manager made an ELB/NLB (and a
  `k8s-elb-<lb>` security group and a rule on the nodes' group) for each; its finalizer
  `service.kubernetes.io/load-balancer-cleanup` holds the Service until they are deleted. The
  load balancer's name is `a` + the Service UID without dashes, cut to 32 (the cloud provider's
  DefaultLoadBalancerName), its DNS name in `status.loadBalancer.ingress`. Services that another
  controller serves (`spec.loadBalancerClass`, e.g. the AWS Load Balancer Controller) are deleted
  too; their names are not derivable (`load_balancer_name` None), their hostnames are reported.
- **PersistentVolumeClaims bound to an AWS-provisioned PersistentVolume** (`spec.csi.driver:
  ebs.csi.aws.com`, or the in-tree `awsElasticBlockStore`) whose reclaim policy is Delete: once the
  claim is gone, the EBS CSI driver deletes the volume and the PV. Unbound claims of an EBS
  StorageClass go too (the driver could still provision them). Claims bound to a Retain PV are
  left alone unless `include_retained_claims` (deleting them frees nothing in AWS); their volumes
  are reported in `retained_volume_ids`.
- **Pods that mount such a claim** (scheduled and not finished): the pvc-protection finalizer
  keeps a claim while a pod uses it, so they are deleted — after their claims, so that a
  controller's replacement pod cannot start on a claim being deleted. No eviction, no
  PodDisruptionBudget, no drain: the cluster is going away.

One call is one bounded pass (`max_deletes` DELETE requests at most, `truncated` if more were
due): list Services, PVCs, PVs, StorageClasses and pods across namespaces (paginated), then
delete what is not already being deleted. Deleting is idempotent (an object already carrying
`deletionTimestamp` is not deleted again; 404 is done), so a retry after a lost response is safe.
`list_cloud_backed_objects` is the same pass without deletes: poll it (durable timers in the
workflow) until `done`.

The result names what was found — the load balancer names and hostnames and the EBS volume ids
learned — what this call deleted, and how much is still `pending`: every Service that is or was
a LoadBalancer (its cleanup finalizer still set), every deletable claim, and every AWS PV with
reclaim policy Delete (its volume not yet deleted by the driver). A workflow should keep the
first call's ids: once the objects are gone the API no longer names them, and if the controllers
never delete them (CCM or CSI driver down) the sweep needs them.

Errors: unreachable API server, 5xx and 429 are retryable (`WorkloadUnreachable`,
`WorkloadServerError`: the workflow's retry policy and deadline bound them); 401/403, a server
certificate that is not the cluster's, and any other unexpected 4xx (e.g. 422) are not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from capt.activities.aws.models import AwsResult
from capt.activities.aws.session import aws_activity
from capt.activities.workload.activities import WorkloadAccess, connect
from capt.activities.workload.client import WorkloadClient
from capt.activities.workload.discover import discover_workload_access
from capt.activities.workload.objects import (
    EBS_CSI_DRIVER,
    IN_TREE_EBS_PROVISIONER,
    MIRROR_POD_ANNOTATION,
    default_load_balancer_name,
    ebs_volume_id,
    ebs_volume_zone,
    pod_claims,
)

LB_CLEANUP_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
EBS_PROVISIONERS = (EBS_CSI_DRIVER, IN_TREE_EBS_PROVISIONER)
DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
DEFAULT_MAX_DELETES = 200


# --------------------------------------------------------------------------------------------
# models


class CloudBackedObjectsRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    # Also delete (and count as pending) claims bound to a Retain PV.
    include_retained_claims: bool = False


class DeleteCloudBackedObjectsRequest(CloudBackedObjectsRequest):
    delete_pods: bool = True  # delete the pods that keep a claim in use
    max_deletes: int = DEFAULT_MAX_DELETES  # DELETE requests in this call, at most


class WorkloadObjectRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["Service", "PersistentVolumeClaim", "Pod"]
    namespace: str
    name: str
    uid: str = ""


class CloudBackedService(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str
    type: str  # LoadBalancer, or another type still holding the cleanup finalizer
    # The AWS cloud provider's load balancer name (classic ELB or NLB); None when another
    # controller (spec.loadBalancerClass) serves it.
    load_balancer_name: str | None
    load_balancer_class: str | None = None
    hostnames: tuple[str, ...] = ()  # status.loadBalancer.ingress[].hostname
    deleting: bool = False
    finalizers: tuple[str, ...] = ()


class CloudBackedClaim(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str
    storage_class: str | None = None
    phase: str = ""
    volume_name: str | None = None  # the bound PV
    volume_id: str | None = None  # its EBS volume
    reclaim_policy: str | None = None
    deleting: bool = False
    pods: tuple[str, ...] = ()  # "<ns>/<name>" of the pods that keep it in use


class CloudBackedVolume(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # the PV
    volume_id: str
    driver: str  # ebs.csi.aws.com | kubernetes.io/aws-ebs (in-tree)
    reclaim_policy: str
    phase: str = ""
    availability_zone: str | None = None
    claim: str | None = None  # "<ns>/<name>" of the claim it is (or was) bound to
    deleting: bool = False


class CloudBackedObjects(AwsResult):
    services: tuple[CloudBackedService, ...] = ()
    claims: tuple[CloudBackedClaim, ...] = ()
    volumes: tuple[CloudBackedVolume, ...] = ()  # every AWS-backed PV, any reclaim policy
    deleted: tuple[WorkloadObjectRef, ...] = ()  # DELETE sent (and accepted) by this call
    truncated: bool = False  # max_deletes reached: call again
    # What was learned, for the sweep after the workload API is gone:
    load_balancer_names: tuple[str, ...] = ()
    load_balancer_hostnames: tuple[str, ...] = ()
    volume_ids: tuple[str, ...] = ()  # EBS volumes Kubernetes deletes (reclaim policy Delete)
    retained_volume_ids: tuple[str, ...] = ()  # EBS volumes Kubernetes keeps (Retain, Recycle)
    pending: int = 0  # services + deletable claims + Delete volumes still present when listed
    done: bool = False  # nothing pending


# --------------------------------------------------------------------------------------------
# the pass (pure over a client)


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _deleting(obj: dict) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def _default_class(classes: dict[str, dict]) -> str | None:
    defaults = sorted(
        (str(_meta(sc).get("creationTimestamp") or ""), name)
        for name, sc in classes.items()
        if any((_meta(sc).get("annotations") or {}).get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)
    )
    return defaults[-1][1] if defaults else None


def _holds(pod: dict) -> bool:
    """Does the pod keep its claims in use (pvc-protection): scheduled and not finished."""
    return bool((pod.get("spec") or {}).get("nodeName")) and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def _service(svc: dict) -> CloudBackedService | None:
    meta, spec = _meta(svc), svc.get("spec") or {}
    finalizers = tuple(meta.get("finalizers") or ())
    if spec.get("type") != "LoadBalancer" and LB_CLEANUP_FINALIZER not in finalizers:
        return None
    uid = str(meta.get("uid") or "")
    lb_class = spec.get("loadBalancerClass") or None
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return CloudBackedService(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=uid,
        type=str(spec.get("type") or "ClusterIP"),
        load_balancer_name=default_load_balancer_name(uid) if uid and not lb_class else None,
        load_balancer_class=lb_class,
        hostnames=tuple(str(i["hostname"]) for i in ingress if i.get("hostname")),
        deleting=_deleting(svc),
        finalizers=finalizers,
    )


def _volume(pv: dict) -> CloudBackedVolume | None:
    volume_id = ebs_volume_id(pv)
    if volume_id is None:
        return None
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef") or {}
    return CloudBackedVolume(
        name=str(_meta(pv).get("name") or ""),
        volume_id=volume_id,
        driver=EBS_CSI_DRIVER if spec.get("csi") else IN_TREE_EBS_PROVISIONER,
        reclaim_policy=str(spec.get("persistentVolumeReclaimPolicy") or "Retain"),
        phase=str((pv.get("status") or {}).get("phase") or ""),
        availability_zone=ebs_volume_zone(pv),
        claim=f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim.get("name") else None,
        deleting=_deleting(pv),
    )


class Inventory:
    """What the cluster's API holds that keeps AWS resources, as one pass lists it."""

    def __init__(self, client: WorkloadClient, include_retained_claims: bool) -> None:
        self.include_retained = include_retained_claims
        self.raw_services = client.list_all("v1", "services")
        self.raw_claims = client.list_all("v1", "persistentvolumeclaims")
        pvs = client.list_all("v1", "persistentvolumes")
        classes = {
            str(_meta(sc).get("name")): sc for sc in client.list_all("storage.k8s.io/v1", "storageclasses")
        }
        self.pods = client.list_all("v1", "pods")
        self.services = [s for s in (_service(svc) for svc in self.raw_services) if s is not None]
        self.volumes = {v.name: v for v in (_volume(pv) for pv in pvs) if v is not None}
        default_class = _default_class(classes)
        holders: dict[tuple[str, str], list[str]] = {}
        for pod in self.pods:
            meta = _meta(pod)
            if _holds(pod):
                for claim in pod_claims(pod):
                    ns = str(meta.get("namespace") or "")
                    holders.setdefault((ns, claim), []).append(f"{ns}/{meta.get('name', '')}")
        self.claims: list[CloudBackedClaim] = []
        for pvc in self.raw_claims:
            meta, spec = _meta(pvc), pvc.get("spec") or {}
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            volume = self.volumes.get(str(spec.get("volumeName") or ""))
            class_name = spec.get("storageClassName")
            if class_name is None:
                class_name = default_class
            if volume is None:
                if spec.get("volumeName"):
                    continue  # bound to a volume that is not AWS's
                provisioner = (classes.get(class_name or "") or {}).get("provisioner")
                if provisioner not in EBS_PROVISIONERS:
                    continue
            elif volume.reclaim_policy != "Delete" and not include_retained_claims:
                continue
            self.claims.append(
                CloudBackedClaim(
                    namespace=ns,
                    name=name,
                    uid=str(meta.get("uid") or ""),
                    storage_class=class_name or None,
                    phase=str((pvc.get("status") or {}).get("phase") or ""),
                    volume_name=volume.name if volume else None,
                    volume_id=volume.volume_id if volume else None,
                    reclaim_policy=volume.reclaim_policy if volume else None,
                    deleting=_deleting(pvc),
                    pods=tuple(sorted(holders.get((ns, name), []))),
                )
            )

    def result(
        self, deleted: list[WorkloadObjectRef], gone: set[tuple[str, str, str]], truncated: bool
    ) -> CloudBackedObjects:
        """`deleted`: DELETEs this pass sent; `gone`: (kind, ns, name) found already gone (404)."""
        refs = tuple(deleted)
        deleting = {(r.kind, r.namespace, r.name) for r in refs}
        services = tuple(
            s.model_copy(update={"deleting": s.deleting or ("Service", s.namespace, s.name) in deleting})
            for s in self.services
            if ("Service", s.namespace, s.name) not in gone
        )
        claims = tuple(
            c.model_copy(
                update={"deleting": c.deleting or ("PersistentVolumeClaim", c.namespace, c.name) in deleting}
            )
            for c in self.claims
            if ("PersistentVolumeClaim", c.namespace, c.name) not in gone
        )
        volumes = tuple(sorted(self.volumes.values(), key=lambda v: v.name))
        deleting_volumes = [v for v in volumes if v.reclaim_policy == "Delete"]
        pending = len(services) + len(claims) + len(deleting_volumes)
        return CloudBackedObjects(
            services=services,
            claims=claims,
            volumes=volumes,
            deleted=refs,
            truncated=truncated,
            load_balancer_names=tuple(
                sorted({s.load_balancer_name for s in self.services if s.load_balancer_name})
            ),
            load_balancer_hostnames=tuple(sorted({h for s in self.services for h in s.hostnames})),
            volume_ids=tuple(sorted({v.volume_id for v in deleting_volumes})),
            retained_volume_ids=tuple(sorted({v.volume_id for v in volumes if v.reclaim_policy != "Delete"})),
            pending=pending,
            done=pending == 0,
        )


def list_pass(client: WorkloadClient, include_retained_claims: bool = False) -> CloudBackedObjects:
    """What is there, deleting nothing."""
    return Inventory(client, include_retained_claims).result([], set(), False)


def delete_pass(
    client: WorkloadClient,
    *,
    include_retained_claims: bool = False,
    delete_pods: bool = True,
    max_deletes: int = DEFAULT_MAX_DELETES,
    heartbeat: Callable[..., None] | None = None,
) -> CloudBackedObjects:
    """List, then delete Services, claims and (after them) the pods that hold the claims; at most
    `max_deletes` DELETE requests."""
    inv = Inventory(client, include_retained_claims)
    deleted: list[WorkloadObjectRef] = []
    gone: set[tuple[str, str, str]] = set()
    budget = max(0, max_deletes)

    def delete(kind: str, plural: str, namespace: str, name: str, uid: str) -> bool:
        """False when the budget is spent."""
        nonlocal budget
        if budget <= 0:
            return False
        budget -= 1
        if client.delete_object("v1", plural, name, namespace) is None:
            gone.add((kind, namespace, name))  # already gone (404): done, not pending
        else:
            deleted.append(WorkloadObjectRef(kind=kind, namespace=namespace, name=name, uid=uid))
        if heartbeat is not None:
            heartbeat(f"{kind} {namespace}/{name}")
        return True

    truncated = False
    for svc in inv.services:
        if svc.deleting or svc.type != "LoadBalancer":
            continue  # already going, or its type changed: the CCM is removing its load balancer
        if not delete("Service", "services", svc.namespace, svc.name, svc.uid):
            truncated = True
            break
    releasing: set[tuple[str, str]] = set()
    for claim in inv.claims:
        if claim.deleting:
            releasing.add((claim.namespace, claim.name))
        elif not truncated:
            if not delete(
                "PersistentVolumeClaim", "persistentvolumeclaims", claim.namespace, claim.name, claim.uid
            ):
                truncated = True
            else:
                releasing.add((claim.namespace, claim.name))
    if delete_pods and not truncated:
        for pod in inv.pods:
            meta = _meta(pod)
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            if (
                _deleting(pod)
                or not _holds(pod)
                or MIRROR_POD_ANNOTATION in (meta.get("annotations") or {})
                or not any((ns, claim) in releasing for claim in pod_claims(pod))
            ):
                continue
            if not delete("Pod", "pods", ns, name, str(meta.get("uid") or "")):
                truncated = True
                break
    return inv.result(deleted, gone, truncated)


# --------------------------------------------------------------------------------------------
# activities


def _log(verb: str, result: CloudBackedObjects) -> None:
    activity.logger.info(
        "workload teardown %s: %d pending (%d services, %d claims, %d volumes)%s%s",
        verb,
        result.pending,
        len(result.services),
        len(result.claims),
        len([v for v in result.volumes if v.reclaim_policy == "Delete"]),
        f"; deleted {', '.join(f'{r.kind} {r.namespace}/{r.name}' for r in result.deleted)}"
        if result.deleted
        else "",
        "; more to delete next call" if result.truncated else "",
    )


@aws_activity
def delete_cloud_backed_objects(req: DeleteCloudBackedObjectsRequest) -> CloudBackedObjects:
    """Delete every LoadBalancer Service, every claim of an AWS volume Kubernetes deletes, and the
    pods that keep those claims in use; report what was found, deleted and is still pending."""
    with connect(req.access) as client:
        result = delete_pass(
            client,
            include_retained_claims=req.include_retained_claims,
            delete_pods=req.delete_pods,
            max_deletes=req.max_deletes,
            heartbeat=activity.heartbeat,
        )
    _log("delete", result)
    return result


@aws_activity
def list_cloud_backed_objects(req: CloudBackedObjectsRequest) -> CloudBackedObjects:
    """The same inventory without deleting anything: poll it until `done`."""
    with connect(req.access) as client:
        result = list_pass(client, req.include_retained_claims)
    _log("list", result)
    return result


TEARDOWN_ACTIVITIES = [delete_cloud_backed_objects, list_cloud_backed_objects, discover_workload_access]
