"""The Kubernetes API subset capt's workload client uses, served from the simulated cluster.

`handle` answers one request (method, path, query, body) for one cluster as kube-apiserver would:
JSON objects and lists (`limit`/`continue` pagination, label selectors, the field selectors the
API server supports for nodes and pods), `Status` objects for errors with the usual reasons, JSON
merge patches on Nodes, the policy/v1 Eviction subresource, Secrets with create/replace/delete
semantics (409 AlreadyExists, 404 NotFound). Authorization is kube-apiserver's simplest: members
of system:masters may do everything, anybody else is Forbidden.

Pure except for the `World` it reads and changes (under the world's lock). Replies, selectors
and the JSON of Nodes and pods are in simulator.kubeapi_objects.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from capt.dev.simulator import resources
from capt.dev.simulator.kubeapi_objects import (
    BadRequest,
    Reply,
    _paginate,
    _phase,
    fields_match,
    labels_match,
    merge_patch,
    node_json,
    not_found,
    parse_field_selector,
    parse_label_selector,
    pod_json,
    status,
)
from capt.dev.simulator.world.core import World
from capt.dev.simulator.world.state import Cluster, Pod

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
COMPUTED_TAINTS = (
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
)
NODE_FIELDS = ("metadata.name", "spec.unschedulable")
POD_FIELDS = ("metadata.name", "metadata.namespace", "spec.nodeName", "status.phase")
SECRET_FIELDS = ("metadata.name", "metadata.namespace", "type")


# --------------------------------------------------------------------------------------------
# requests


def handle(
    world: World,
    cluster: Cluster,
    method: str,
    target: str,
    body: bytes,
    content_type: str,
    groups: tuple[str, ...],
) -> Reply:
    """Answer one request to `cluster`'s API server."""
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    parts = [unquote(p) for p in url.path.split("/") if p]
    with world.lock:
        if world.api_fault(cluster):
            if parts and parts[0] in ("readyz", "livez", "healthz"):
                return Reply(
                    500, "[-]etcd failed: reason withheld\n[-]simulated-fault failed\nreadyz check failed"
                )
            return status(
                503, "ServiceUnavailable", "simulated fault: the API server is unavailable (api-5xx)"
            )
        if parts and parts[0] in ("readyz", "livez", "healthz") and len(parts) == 1:
            if method != "GET":
                return status(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            if parts[0] != "livez" and not world.etcd_quorum(cluster):
                return Reply(500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed")
            return Reply(200, "ok")
        if "system:masters" not in groups:
            return status(
                403,
                "Forbidden",
                f'User cannot {method.lower()} resource at "{url.path}": only system:masters is allowed',
            )
        if parts == ["version"]:
            major, minor = cluster.version.lstrip("v").split(".")[:2]
            return Reply(
                200,
                {"major": major, "minor": minor, "gitVersion": cluster.version, "platform": "linux/amd64"},
            )
        if not world.etcd_quorum(cluster):
            return status(500, "InternalError", "etcdserver: request timed out")
        try:
            if content_type.split(";")[0].strip() == resources.APPLY_PATCH:
                payload = yaml.safe_load(body) if body else None  # YAML (JSON is YAML too)
            else:
                payload = json.loads(body) if body else None
        except (ValueError, yaml.YAMLError):
            return status(400, "BadRequest", "the request body is not valid JSON (or YAML for apply)")
        try:
            return _route(world, cluster, method, parts, query, payload, content_type)
        except BadRequest as err:
            return status(400, "BadRequest", str(err))


def _route(
    world: World, cluster: Cluster, method: str, parts: list[str], query: dict, payload: Any, ctype: str
) -> Reply:
    generic = resources.handle(world, cluster, method, parts, query, payload, ctype)
    if generic is not None:  # discovery, or an object of a kind without its own handler
        return Reply(*generic)
    if parts[:2] != ["api", "v1"]:
        return status(404, "NotFound", "the server could not find the requested resource")
    rest = parts[2:]
    if rest == ["nodes"]:
        return _allow(method, ("GET",)) or _list_nodes(cluster, query)
    if len(rest) == 2 and rest[0] == "nodes":
        return _node(world, cluster, method, rest[1], payload, ctype)
    if rest == ["pods"]:
        return _allow(method, ("GET",)) or _list_pods(cluster, query, None)
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, kind, tail = rest[1], rest[2], rest[3:]
        if not resources.namespace_exists(cluster, ns):
            return not_found("namespaces", ns)
        if kind == "pods":
            if not tail:
                if method == "POST":
                    return _create_pod(world, cluster, ns, None, payload)
                return _allow(method, ("GET",)) or _list_pods(cluster, query, ns)
            if len(tail) == 1:
                if method == "PATCH" and ctype.split(";")[0].strip() == resources.APPLY_PATCH:
                    if not query.get("fieldManager"):
                        return status(
                            422, "Invalid", "fieldManager: Required value: is required for apply patch"
                        )
                    return _create_pod(world, cluster, ns, tail[0], payload)
                return _pod(world, cluster, method, ns, tail[0])
            if len(tail) == 2 and tail[1] == "eviction":
                return _allow(method, ("POST",)) or _evict(world, cluster, ns, tail[0], payload)
        if kind == "secrets":
            if not tail:
                return _secrets(world, cluster, method, ns, query, payload)
            if len(tail) == 1:
                return _secret(world, cluster, method, ns, tail[0], payload, query, ctype)
    return status(404, "NotFound", "the server could not find the requested resource")


def _allow(method: str, allowed: tuple[str, ...]) -> Reply | None:
    if method in allowed:
        return None
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _list_nodes(cluster: Cluster, query: dict) -> Reply:
    labels = parse_label_selector(query.get("labelSelector"))
    fields = parse_field_selector(query.get("fieldSelector"), NODE_FIELDS)
    items = [
        node_json(n)
        for n in sorted(cluster.nodes.values(), key=lambda n: n.name)
        if labels_match(n.labels, labels)
        and fields_match(
            {"metadata.name": n.name, "spec.unschedulable": str(n.unschedulable).lower()}, fields
        )
    ]
    return Reply(200, _paginate(items, query, "NodeList", cluster.resource_version))


def _node(world: World, cluster: Cluster, method: str, name: str, payload: Any, ctype: str) -> Reply:
    node = cluster.nodes.get(name)
    if method == "GET":
        return Reply(200, node_json(node)) if node else not_found("nodes", name)
    if method == "DELETE":
        if node is None:
            return not_found("nodes", name)
        world.delete_node(cluster, name)
        return status(200, "", f'node "{name}" deleted', {"name": name, "kind": "nodes", "uid": node.uid})
    if method == "PATCH":
        if ctype.split(";")[0].strip() not in MERGE_PATCH_TYPES:
            return status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: {', '.join(MERGE_PATCH_TYPES)}",
            )
        if node is None:
            return not_found("nodes", name)
        if not isinstance(payload, dict):
            raise BadRequest("a merge patch must be a JSON object")
        patched = merge_patch(node_json(node), payload)
        meta, spec = patched.get("metadata") or {}, patched.get("spec") or {}
        if meta.get("name", name) != name:
            raise BadRequest("the name of the object does not match the name on the URL")
        node.labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        node.annotations = {
            str(k): str(v)
            for k, v in (meta.get("annotations") or {}).items()
            if k not in ("kubeadm.alpha.kubernetes.io/cri-socket", "node.alpha.kubernetes.io/ttl")
        }
        node.unschedulable = bool(spec.get("unschedulable"))
        node.taints = [dict(t) for t in spec.get("taints") or [] if t.get("key") not in COMPUTED_TAINTS]
        node.resource_version = cluster.next_rv()
        return Reply(200, node_json(node))
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _list_pods(cluster: Cluster, query: dict, namespace: str | None) -> Reply:
    labels = parse_label_selector(query.get("labelSelector"))
    fields = parse_field_selector(query.get("fieldSelector"), POD_FIELDS)
    items = [
        pod_json(p)
        for (ns, _), p in sorted(cluster.pods.items())
        if (namespace is None or ns == namespace)
        and labels_match(p.labels, labels)
        and fields_match(
            {
                "metadata.name": p.name,
                "metadata.namespace": ns,
                "spec.nodeName": p.node_name or "",
                "status.phase": _phase(p),
            },
            fields,
        )
    ]
    return Reply(200, _paginate(items, query, "PodList", cluster.resource_version))


def _pod(world: World, cluster: Cluster, method: str, ns: str, name: str) -> Reply:
    pod = cluster.pods.get((ns, name))
    if pod is None:
        return not_found("pods", name)
    if method == "GET":
        return Reply(200, pod_json(pod))
    if method == "DELETE":
        world.evict(cluster, pod)
        return Reply(200, pod_json(pod))
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _create_pod(world: World, cluster: Cluster, ns: str, name: str | None, payload: Any) -> Reply:
    """POST (create, 409 if it exists) or server-side apply (create, or 200 with the pod unchanged:
    a pod's spec is immutable) of a bare pod. Its spec.volumes are kept: a pod that mounts a PVC
    holds it (pvc-protection) and the CSI driver attaches the volume to its node."""
    if not isinstance(payload, dict) or payload.get("kind", "Pod") != "Pod":
        raise BadRequest("the body must be a Pod")
    meta = payload.get("metadata") or {}
    pod_name = meta.get("name")
    if not pod_name:
        raise BadRequest("metadata.name: Required value: name is required")
    if name is not None and pod_name != name:
        raise BadRequest("the name of the object does not match the name on the URL")
    if meta.get("namespace", ns) != ns:
        raise BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    existing = cluster.pods.get((ns, pod_name))
    if existing is not None:
        if name is None:
            return status(
                409, "AlreadyExists", f'pods "{pod_name}" already exists', {"name": pod_name, "kind": "pods"}
            )
        return Reply(200, pod_json(existing))
    spec = payload.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        raise BadRequest("spec.containers: Required value")
    owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    pod = Pod(
        namespace=ns,
        name=pod_name,
        node_name=spec.get("nodeName") or None,
        created=world.now(),
        owner_kind=owner.get("kind") if owner else None,
        owner_name=owner.get("name") if owner else None,
        tolerations=tuple(dict(t) for t in spec.get("tolerations") or []),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        volumes=tuple(copy.deepcopy(v) for v in spec.get("volumes") or []),
        containers=tuple(copy.deepcopy(c) for c in containers),
    )
    world.add_pod(cluster, pod)
    return Reply(201, pod_json(pod))


def _evict(world: World, cluster: Cluster, ns: str, name: str, payload: Any) -> Reply:
    if not isinstance(payload, dict) or payload.get("kind") != "Eviction":
        raise BadRequest("the body must be an Eviction (policy/v1)")
    if (payload.get("metadata") or {}).get("name", name) != name:
        raise BadRequest("name in URL does not match name in Eviction object")
    pod = cluster.pods.get((ns, name))
    if pod is None:
        return not_found("pods", name)
    world.evict(cluster, pod)
    return status(201, "", "", None)


def _secret_json(secret: dict) -> dict:
    out = copy.deepcopy(secret)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Secret")
    return out


def _normalize_secret(ns: str, payload: Any) -> dict:
    if not isinstance(payload, dict) or payload.get("kind", "Secret") != "Secret":
        raise BadRequest("the body must be a Secret")
    meta = dict(payload.get("metadata") or {})
    if not meta.get("name"):
        raise BadRequest("metadata.name: Required value: name is required")
    if meta.get("namespace", ns) != ns:
        raise BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["namespace"] = ns
    data = dict(payload.get("data") or {})
    for k, v in (payload.get("stringData") or {}).items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    for k, v in data.items():
        try:
            base64.b64decode(str(v), validate=True)
        except ValueError:
            raise BadRequest(f"data[{k}]: illegal base64 data") from None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": payload.get("type") or "Opaque",
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
        "data": data,
    }


def _secrets(world: World, cluster: Cluster, method: str, ns: str, query: dict, payload: Any) -> Reply:
    if method == "GET":
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), SECRET_FIELDS)
        items = [
            _secret_json(s)
            for (sns, name), s in sorted(cluster.secrets.items())
            if sns == ns
            and labels_match((s.get("metadata") or {}).get("labels") or {}, labels)
            and fields_match(
                {"metadata.name": name, "metadata.namespace": sns, "type": s.get("type", "")}, fields
            )
        ]
        return Reply(200, _paginate(items, query, "SecretList", cluster.resource_version))
    if method == "POST":
        secret = _normalize_secret(ns, payload)
        name = secret["metadata"]["name"]
        if (ns, name) in cluster.secrets:
            return status(
                409, "AlreadyExists", f'secrets "{name}" already exists', {"name": name, "kind": "secrets"}
            )
        return Reply(201, _secret_json(world.store_secret(cluster, secret)))
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _secret(
    world: World,
    cluster: Cluster,
    method: str,
    ns: str,
    name: str,
    payload: Any,
    query: dict | None = None,
    ctype: str = "",
) -> Reply:
    existing = cluster.secrets.get((ns, name))
    if method == "PATCH" and ctype.split(";")[0].strip() == resources.APPLY_PATCH:
        # Server-side apply (a ClusterResourceSet's Secret): create or replace.
        if not (query or {}).get("fieldManager"):
            return status(422, "Invalid", "fieldManager: Required value: is required for apply patch")
        secret = _normalize_secret(ns, payload)
        if secret["metadata"]["name"] != name:
            raise BadRequest("the name of the object does not match the name on the URL")
        if existing is not None:
            secret["metadata"]["uid"] = existing["metadata"].get("uid")
            secret["metadata"]["creationTimestamp"] = existing["metadata"].get("creationTimestamp")
        return Reply(201 if existing is None else 200, _secret_json(world.store_secret(cluster, secret)))
    if method == "GET":
        return Reply(200, _secret_json(existing)) if existing else not_found("secrets", name)
    if method == "DELETE":
        if existing is None:
            return not_found("secrets", name)
        del cluster.secrets[(ns, name)]
        return status(200, "", f'secret "{name}" deleted', {"name": name, "kind": "secrets"})
    if method == "PUT":
        secret = _normalize_secret(ns, payload)
        if secret["metadata"]["name"] != name:
            raise BadRequest("the name of the object does not match the name on the URL")
        if existing is None:
            return not_found("secrets", name)
        secret["metadata"]["uid"] = existing["metadata"].get("uid")
        secret["metadata"]["creationTimestamp"] = existing["metadata"].get("creationTimestamp")
        return Reply(200, _secret_json(world.store_secret(cluster, secret)))
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
