"""The parts of the simulated Kubernetes API (simulator.kubeapi) below the routing: replies and
`Status` objects, label and field selectors, pagination, the JSON of Nodes and pods, and RFC 7386
JSON merge patch."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from capt.dev.simulator import resources
from capt.dev.simulator.world.state import Node, Pod, rfc3339


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # dict (JSON) or str (text/plain)

    @property
    def content_type(self) -> str:
        return "application/json" if isinstance(self.body, dict) else "text/plain; charset=utf-8"

    def encode(self) -> bytes:
        if isinstance(self.body, dict):
            return json.dumps(self.body, separators=(",", ":")).encode()
        return str(self.body).encode()


def status(code: int, reason: str, message: str, details: dict | None = None) -> Reply:
    body: dict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return Reply(code, body)


def not_found(kind: str, name: str) -> Reply:
    return status(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})


class BadRequest(Exception):
    pass


# --------------------------------------------------------------------------------------------
# selectors


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """→ [(key, op, values)], op one of exists, !exists, =, !=, in, notin."""
    reqs = []
    for part in _split_top(text or ""):
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\((.*)\)$", part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append((m.group(1), m.group(2), values))
            continue
        m = re.match(r"^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$", part)
        if m:
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
            continue
        m = re.match(r"^(!?)([\w./-]+)$", part)
        if m:
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", ()))
            continue
        raise BadRequest(f"unable to parse requirement: {part!r}")
    return reqs


def labels_match(labels: dict[str, str], reqs: list[tuple[str, str, tuple[str, ...]]]) -> bool:
    for key, op, values in reqs:
        has = key in labels
        value = labels.get(key)
        if op == "exists":
            ok = has
        elif op == "!exists":
            ok = not has
        elif op == "=":
            ok = has and value == values[0]
        elif op == "!=":
            ok = not has or value != values[0]
        elif op == "in":
            ok = has and value in values
        else:  # notin
            ok = not has or value not in values
        if not ok:
            return False
    return True


def parse_field_selector(text: str | None, supported: tuple[str, ...]) -> list[tuple[str, bool, str]]:
    """→ [(field, equal, value)]; an unsupported field is a 400, as kube-apiserver answers."""
    reqs = []
    for part in _split_top(text or ""):
        m = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise BadRequest(f"invalid field selector: {part!r}")
        if m.group(1) not in supported:
            raise BadRequest(f"field label not supported: {m.group(1)}")
        reqs.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return reqs


def fields_match(values: dict[str, str], reqs: list[tuple[str, bool, str]]) -> bool:
    return all((values.get(f, "") == v) == eq for f, eq, v in reqs)


def _paginate(items: list[dict], query: dict[str, str], kind: str, rv: int) -> dict:
    try:
        return resources.paginate(items, query, kind, rv)
    except ValueError as err:
        raise BadRequest(str(err)) from None


# --------------------------------------------------------------------------------------------
# objects


def node_json(node: Node) -> dict:
    taints = [dict(t) for t in node.taints]
    if node.unschedulable:
        taints.append(
            {
                "key": "node.kubernetes.io/unschedulable",
                "effect": "NoSchedule",
                "timeAdded": rfc3339(node.ready_since),
            }
        )
    if node.ready_status == "False":
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    elif node.ready_status == "Unknown":
        taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"})
    spec: dict = {"providerID": node.provider_id}
    if node.unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    since = rfc3339(node.ready_since)
    ok = {"lastHeartbeatTime": since, "lastTransitionTime": rfc3339(node.created), "status": "False"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "uid": node.uid,
            "resourceVersion": str(node.resource_version),
            "creationTimestamp": rfc3339(node.created),
            "labels": dict(node.labels),
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                **node.annotations,
            },
        },
        "spec": spec,
        "status": {
            "conditions": [
                {
                    **ok,
                    "type": "MemoryPressure",
                    "reason": "KubeletHasSufficientMemory",
                    "message": "kubelet has sufficient memory available",
                },
                {
                    **ok,
                    "type": "DiskPressure",
                    "reason": "KubeletHasNoDiskPressure",
                    "message": "kubelet has no disk pressure",
                },
                {
                    **ok,
                    "type": "PIDPressure",
                    "reason": "KubeletHasSufficientPID",
                    "message": "kubelet has sufficient PID available",
                },
                {
                    "type": "Ready",
                    "status": node.ready_status,
                    "reason": node.ready_reason,
                    "message": node.ready_message,
                    "lastHeartbeatTime": since,
                    "lastTransitionTime": since,
                },
            ],
            "addresses": [dict(a) for a in node.addresses],
            "nodeInfo": {
                "kubeletVersion": node.kubelet_version,
                "kubeProxyVersion": node.kubelet_version,
                "architecture": node.architecture,
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04 LTS",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": "6.8.0-1015-aws",
                "machineID": node.uid.replace("-", ""),
                "systemUUID": node.instance_id,
                "bootID": node.uid,
            },
        },
    }


def pod_json(pod: Pod) -> dict:
    meta: dict = {
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": pod.uid,
        "resourceVersion": str(pod.resource_version),
        "creationTimestamp": rfc3339(pod.created),
        "labels": dict(pod.labels),
    }
    if pod.mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": pod.uid, "kubernetes.io/config.source": "file"}
    if pod.owner_kind:
        api = "v1" if pod.owner_kind == "Node" else "apps/v1"
        meta["ownerReferences"] = [
            {
                "apiVersion": api,
                "kind": pod.owner_kind,
                "name": pod.owner_name,
                "uid": pod.uid,
                "controller": True,
            }
        ]
    if pod.deletion is not None:
        meta["deletionTimestamp"] = rfc3339(pod.deletion)
        meta["deletionGracePeriodSeconds"] = 30
    spec: dict = {
        "containers": [dict(c) for c in pod.containers]
        or [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]
    }
    if pod.volumes:
        spec["volumes"] = [copy.deepcopy(v) for v in pod.volumes]
    if pod.node_name:
        spec["nodeName"] = pod.node_name
    if pod.tolerations:
        spec["tolerations"] = [dict(t) for t in pod.tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": _phase(pod)},
    }


def _phase(pod: Pod) -> str:
    return "Running" if pod.node_name else "Pending"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
