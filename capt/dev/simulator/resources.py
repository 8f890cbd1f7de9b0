"""API discovery and a generic object store, for what ClusterResourceSets apply.

- Discovery: `GET /api/v1` and `GET /apis/<group>/<version>` answer an APIResourceList for the
  core group and the groups the CAPA template's addons use (apps/v1, rbac.authorization.k8s.io/v1,
  storage.k8s.io/v1, policy/v1), plus apiextensions.k8s.io/v1; an applied
  CustomResourceDefinition adds its kinds (the generic fallback), as on a real API server. Any
  other group/version is 404, as for a CRD that is not installed.
- Objects: server-side apply (`PATCH …?fieldManager=…` with `application/apply-patch+yaml`)
  creates (201) or replaces (200) the object by apiVersion/kind/namespace/name; GET returns it,
  GET on the collection lists (also across namespaces, `GET /api/v1/services`; `limit`/`continue`
  pagination), DELETE removes — or, for an object with finalizers, sets `deletionTimestamp` and
  leaves it to the controllers that own the finalizers (simulator.storage). No field ownership or
  merging: the applied object is the whole object, which is what capt's ApplyOnce/Reconcile
  needs, except for what the API server and controllers own (status, their finalizers, allocated
  node ports, volume binding: simulator.storage.admit). Namespaces are the built-in ones plus
  applied Namespace objects.

Nodes, pods and Secrets keep their own handlers in simulator.kubeapi.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

from capt.dev.simulator import kube_system, storage
from capt.dev.simulator.world.core import World
from capt.dev.simulator.world.state import Cluster, rfc3339

APPLY_PATCH = "application/apply-patch+yaml"
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SPECIAL = {("v1", "nodes"), ("v1", "pods"), ("v1", "secrets")}  # served by simulator.kubeapi

# group/version → (kind, plural, namespaced)
GROUPS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "v1": (
        ("Node", "nodes", False),
        ("Pod", "pods", True),
        ("Secret", "secrets", True),
        ("Namespace", "namespaces", False),
        ("ConfigMap", "configmaps", True),
        ("Service", "services", True),
        ("ServiceAccount", "serviceaccounts", True),
        ("Endpoints", "endpoints", True),
        ("PersistentVolume", "persistentvolumes", False),
        ("PersistentVolumeClaim", "persistentvolumeclaims", True),
        ("LimitRange", "limitranges", True),
        ("ResourceQuota", "resourcequotas", True),
    ),
    "apps/v1": (
        ("Deployment", "deployments", True),
        ("DaemonSet", "daemonsets", True),
        ("StatefulSet", "statefulsets", True),
        ("ReplicaSet", "replicasets", True),
    ),
    "rbac.authorization.k8s.io/v1": (
        ("ClusterRole", "clusterroles", False),
        ("ClusterRoleBinding", "clusterrolebindings", False),
        ("Role", "roles", True),
        ("RoleBinding", "rolebindings", True),
    ),
    "storage.k8s.io/v1": (
        ("StorageClass", "storageclasses", False),
        ("CSIDriver", "csidrivers", False),
        ("CSINode", "csinodes", False),
        ("VolumeAttachment", "volumeattachments", False),
    ),
    "policy/v1": (("PodDisruptionBudget", "poddisruptionbudgets", True),),
    "apiextensions.k8s.io/v1": (("CustomResourceDefinition", "customresourcedefinitions", False),),
}
SUBRESOURCES = {("v1", "pods"): ("eviction",)}


def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def group_versions(cluster: Cluster) -> dict[str, tuple[tuple[str, str, bool], ...]]:
    """The built-in table plus the kinds of applied CustomResourceDefinitions."""
    out = dict(GROUPS)
    for (gv, plural, _, _), crd in cluster.objects.items():
        if (gv, plural) != ("apiextensions.k8s.io/v1", "customresourcedefinitions"):
            continue
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if not (spec.get("group") and names.get("kind") and names.get("plural")):
            continue
        for version in spec.get("versions") or []:
            key = f"{spec['group']}/{version.get('name')}"
            entry = (names["kind"], names["plural"], spec.get("scope", "Namespaced") == "Namespaced")
            out[key] = tuple(e for e in out.get(key, ()) if e[1] != entry[1]) + (entry,)
    return out


def discovery(cluster: Cluster, group_version: str) -> dict | None:
    """The APIResourceList for one group/version, or None if it is not served."""
    kinds = group_versions(cluster).get(group_version)
    if kinds is None:
        return None
    resources = []
    for kind, plural, namespaced in kinds:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources.append(
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": verbs,
            }
        )
        for sub in SUBRESOURCES.get((group_version, plural), ()):
            resources.append(
                {"name": f"{plural}/{sub}", "namespaced": namespaced, "kind": kind, "verbs": ["create"]}
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def paginate(items: list[dict], query: dict[str, str], kind: str, rv: int, api_version: str = "v1") -> dict:
    """A list answer with `limit`/`continue` pagination (ValueError: a bad continue token)."""
    try:
        offset = (
            int(json.loads(base64.urlsafe_b64decode(query["continue"]))["o"]) if query.get("continue") else 0
        )
    except (ValueError, KeyError, TypeError):
        raise ValueError("invalid continue token") from None
    limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else 0
    page = items[offset : offset + limit] if limit else items[offset:]
    meta: dict = {"resourceVersion": str(rv)}
    if limit and offset + limit < len(items):
        meta["continue"] = base64.urlsafe_b64encode(json.dumps({"o": offset + limit}).encode()).decode()
        meta["remainingItemCount"] = len(items) - offset - limit
    return {"kind": kind, "apiVersion": api_version, "metadata": meta, "items": page}


def namespace_exists(cluster: Cluster, ns: str) -> bool:
    return ns in BUILTIN_NAMESPACES or ("v1", "namespaces", "", ns) in cluster.objects


def handle(
    world: World, cluster: Cluster, method: str, parts: list[str], query: dict, payload: Any, ctype: str
) -> tuple[int, dict] | None:
    """Answer a discovery or generic-object request; None if the path is not one (the caller's
    own routes, or a 404)."""
    if parts[:1] == ["api"] and len(parts) >= 2:
        gv, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    if not rest:
        if method != "GET":
            return _status(405, "MethodNotAllowed", "the server does not allow this method")
        doc = discovery(cluster, gv)
        return (
            (200, doc)
            if doc is not None
            else _status(404, "NotFound", "the server could not find the requested resource")
        )
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural, name = rest[0], (rest[1] if len(rest) == 2 else None)
    if (gv, plural) in SPECIAL or len(rest) > 2:
        return None
    kinds = {p: (k, ns) for k, p, ns in group_versions(cluster).get(gv, ())}
    if plural not in kinds:
        return _status(404, "NotFound", "the server could not find the requested resource")
    kind, namespaced = kinds[plural]
    all_namespaces = name is None and namespaced and not namespace  # GET /api/v1/services
    if namespaced != bool(namespace) and not all_namespaces:
        return _status(404, "NotFound", "the server could not find the requested resource")
    if namespace and not namespace_exists(cluster, namespace):
        return _status(404, "NotFound", f'namespaces "{namespace}" not found')
    key = (gv, plural, namespace, name or "")
    if name is None:
        if method != "GET":
            return _status(405, "MethodNotAllowed", "the server does not allow this method")
        items = [
            copy.deepcopy(o)
            for k, o in sorted(cluster.objects.items())
            if k[:2] == key[:2] and (all_namespaces or k[2] == namespace)
        ]
        try:
            return 200, paginate(items, query, f"{kind}List", cluster.resource_version, gv)
        except ValueError as err:
            return _status(400, "BadRequest", str(err))
    existing = cluster.objects.get(key)
    if method == "GET":
        if existing is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        return 200, copy.deepcopy(existing)
    if method == "DELETE":
        if existing is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        staying = storage.request_delete(cluster, key, rfc3339(world.now()) or "")
        if staying is not None:  # finalizers hold it: 200 with the object, as kube-apiserver answers
            return 200, copy.deepcopy(staying)
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
    if method == "PATCH":
        return _apply(world, cluster, key, kind, payload, query, ctype, existing)
    return _status(405, "MethodNotAllowed", "the server does not allow this method")


def _apply(
    world: World,
    cluster: Cluster,
    key: tuple[str, str, str, str],
    kind: str,
    payload: Any,
    query: dict,
    ctype: str,
    existing: dict | None,
) -> tuple[int, dict]:
    gv, plural, namespace, name = key
    if ctype.split(";")[0].strip() != APPLY_PATCH:
        return _status(
            415,
            "UnsupportedMediaType",
            f"the simulator only supports {APPLY_PATCH} on {plural}, got {ctype!r}",
        )
    if not query.get("fieldManager"):
        return _status(422, "Invalid", "fieldManager: Required value: is required for apply patch")
    if not isinstance(payload, dict):
        return _status(400, "BadRequest", "the apply patch must be an object")
    meta = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    if payload.get("apiVersion") != gv or payload.get("kind") != kind:
        return _status(
            400,
            "BadRequest",
            f"the body is {payload.get('apiVersion')}/{payload.get('kind')}, the URL {gv}/{kind}",
        )
    if meta.get("name") != name:
        return _status(400, "BadRequest", "the name of the object does not match the name on the URL")
    if meta.get("namespace", namespace) != namespace:
        return _status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        )
    if existing is not None and query.get("force") != "true":
        managers = {m.get("manager") for m in existing["metadata"].get("managedFields", [])}
        if managers - {query["fieldManager"]}:
            return _status(
                409, "Conflict", f"Apply failed with conflicts: fields managed by {sorted(managers)}"
            )
    obj = copy.deepcopy(payload)
    obj["metadata"] = dict(meta)
    if namespace:
        obj["metadata"]["namespace"] = namespace
    old = (existing or {}).get("metadata") or {}
    obj["metadata"]["uid"] = old.get("uid") or str(uuid.uuid4())
    obj["metadata"]["creationTimestamp"] = old.get("creationTimestamp") or rfc3339(world.now())
    try:
        storage.admit(cluster, (gv, plural), obj, existing)
    except ValueError as err:
        return _status(422, "Invalid", str(err))
    changed = existing is None or _content(existing) != _content(obj)
    obj["metadata"]["generation"] = old.get("generation", 0) + (1 if changed else 0)
    obj["metadata"]["resourceVersion"] = str(cluster.next_rv()) if changed else old["resourceVersion"]
    obj["metadata"]["managedFields"] = [
        {"manager": query["fieldManager"], "operation": "Apply", "apiVersion": gv}
    ]
    cluster.objects[key] = obj
    if key == kube_system.KUBEADM_CONFIG and (version := kube_system.kubernetes_version(obj)):
        cluster.version = version  # what the next `kubeadm join --control-plane` reads
    return (201 if existing is None else 200), copy.deepcopy(obj)


def _content(obj: dict) -> dict:
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields")
    }
    return {**obj, "metadata": meta}
