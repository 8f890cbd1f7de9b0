"""Multi-document YAML into typed accessors that remember where each value came from.

Every kind's reader (`spec.kinds`) goes through `Doc`, so a bad value is reported with the
document number, kind, name and the manifest's own field path — and reading goes on, so
that one run lists every problem.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from capt.spec.durations import parse_duration
from capt.spec.errors import Problem

# apiVersion groups capt reads, with the versions accepted for each.
CAPI_VERSIONS = ("v1alpha3", "v1alpha4", "v1beta1", "v1beta2")
GROUPS = {
    "cluster.x-k8s.io": CAPI_VERSIONS,
    "infrastructure.cluster.x-k8s.io": CAPI_VERSIONS,
    "controlplane.cluster.x-k8s.io": CAPI_VERSIONS,
    "bootstrap.cluster.x-k8s.io": CAPI_VERSIONS,
    "addons.cluster.x-k8s.io": CAPI_VERSIONS,
    "": ("v1",),  # core: ConfigMap, Secret
}
KIND_GROUP = {
    "Cluster": "cluster.x-k8s.io",
    "MachineDeployment": "cluster.x-k8s.io",
    "MachineHealthCheck": "cluster.x-k8s.io",
    "AWSCluster": "infrastructure.cluster.x-k8s.io",
    "AWSMachineTemplate": "infrastructure.cluster.x-k8s.io",
    "KubeadmControlPlane": "controlplane.cluster.x-k8s.io",
    "KubeadmConfigTemplate": "bootstrap.cluster.x-k8s.io",
    "ClusterResourceSet": "addons.cluster.x-k8s.io",
    "ConfigMap": "",
    "Secret": "",
}
VERSION_ORDER = {v: i for i, v in enumerate(CAPI_VERSIONS)}

_MISSING = object()
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass
class Doc:
    """One YAML document with its position, and the problem list it reports into."""

    index: int
    body: dict[str, Any]
    problems: list[Problem]
    kind: str = ""
    name: str = ""
    namespace: str = "default"
    group: str = ""
    version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # What the readers looked at (capt/spec/strict.py reports everything else as unknown): `read`
    # holds every path asked for (present or not: a probe names a field capt knows), `whole` the
    # paths whose value was taken as a whole (maps and lists handed on as they are).
    read: set[str] = field(default_factory=set)
    whole: set[str] = field(default_factory=set)

    # --- reporting -------------------------------------------------------------------
    def problem(self, path: str, message: str) -> None:
        problem = Problem(self.index, self.kind, self.name, path, message)
        if problem not in self.problems:  # a field's reader and the field check may agree
            self.problems.append(problem)

    def at_least(self, version: str) -> bool:
        return VERSION_ORDER.get(self.version, 0) >= VERSION_ORDER[version]

    # --- typed reads -----------------------------------------------------------------
    def raw(self, path: str, default: Any = None) -> Any:
        self.read.add(path)
        node: Any = self.body
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return default if node is None else node

    def has(self, path: str) -> bool:
        return self.raw(path, _MISSING) is not _MISSING

    def str(self, path: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.raw(path)
        if value is None:
            if required:
                self.problem(path, "is required")
            return default
        if not isinstance(value, str):
            self.problem(path, type_problem(value, "string", path))
            return default
        return value

    def int(
        self, path: str, default: int | None = None, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.raw(path)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, type_problem(value, "integer", path))
            return default
        if minimum is not None and value < minimum:
            self.problem(path, f"must be >= {minimum}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.problem(path, f"must be <= {maximum}, got {value}")
            return default
        return value

    def bool(self, path: str, default: bool = False) -> bool:
        value = self.raw(path)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, type_problem(value, "boolean", path))
            return default
        return value

    def dict(self, path: str) -> dict[str, Any]:
        self.whole.add(path)
        value = self.raw(path)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, type_problem(value, "mapping", path))
            return {}
        return value

    def list(self, path: str) -> list[Any]:
        self.whole.add(path)
        value = self.raw(path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, type_problem(value, "list", path))
            return []
        return value

    def str_list(self, path: str) -> list[str]:
        out = []
        for i, item in enumerate(self.list(path)):
            if not isinstance(item, str):
                self.problem(f"{path}[{i}]", type_problem(item, "string", f"{path}[{i}]"))
                continue
            out.append(item)
        return out

    def replicas(self, path: str = "spec.replicas") -> int:
        """A replica count: an integer, never negative; CAPI defaults a missing one to 1."""
        value = self.raw(path, 1)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, type_problem(value, "integer", path))
            return 1
        if value < 0:
            self.problem(path, f"must not be negative, got {value}")
            return 0
        return value

    def duration_seconds(self, path: str) -> int | None:
        """A Go duration string ("10m") in seconds; None when absent."""
        text = self.str(path)
        if text is None:
            return None
        try:
            return int(parse_duration(text))
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def str_map(self, path: str) -> dict[str, str]:
        out = {}
        for key, value in self.dict(path).items():
            if value is None or isinstance(value, dict | list):
                self.problem(f"{path}.{key}", type_problem(value, "string", f"{path}.{key}"))
                continue
            out[str(key)] = str(value)
        return out


def _describe(value: Any) -> str:
    if isinstance(value, datetime.date):
        return f"the timestamp {value.isoformat()}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def type_problem(value: Any, expected: str, path: str = "") -> str:
    """What was written where a `expected` ("string", "integer", "boolean", "mapping" or
    "list") belongs, and what to write instead: the one place type problems are worded."""
    got = f"got {_describe(value)}"
    leaf = path.rsplit(".", 1)[-1]
    if expected == "string":
        if leaf == "version" and isinstance(value, int | float) and not isinstance(value, bool):
            return f'{got}; write the Kubernetes version as a quoted string with a v prefix, e.g. "v1.20.5"'
        if isinstance(value, datetime.datetime):
            stamp = value.isoformat().replace("+00:00", "Z")
            return f'{got}; write it quoted: "{stamp}"'
        if isinstance(value, bool | int | float):
            text = str(value).lower() if isinstance(value, bool) else str(value)
            return f'{got}; write "{text}" (quoted) if that is what you mean'
        return f"{got}; write a string"
    if expected == "integer":
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return f"{got}; write {value.strip()} (a number, without quotes)"
        if isinstance(value, float) and value.is_integer():
            return f"{got}; write {int(value)} (a whole number)"
        return f"{got}; write a whole number, e.g. 3"
    if expected == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            word = "true" if value.strip().lower() in ("true", "yes", "on") else "false"
            return f"{got}; write {word} (without quotes)"
        return f"{got}; write true or false"
    if expected == "mapping":
        if isinstance(value, list):
            return f"{got}; write a mapping (key: value lines), not a list (- item lines)"
        return f"{got}; write a mapping (key: value lines)"
    if expected == "list":
        if isinstance(value, dict):
            return f"{got}; write a list (- item lines), not a mapping"
        if isinstance(value, str | int | float):
            return f"{got}; write a list, e.g. [{json.dumps(value)}]"
        return f"{got}; write a list (- item lines)"
    return f"{got}; expected {expected}"


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def is_dns1123_label(name: str) -> bool:
    return len(name) <= 63 and "." not in name and bool(_DNS1123_SUBDOMAIN.match(name))


MAX_DOCUMENT_BYTES = 1 << 20  # the API server's limit for one object, about
MAX_MANIFEST_BYTES = 8 << 20
MAX_EXPANDED_NODES = 100_000  # YAML nodes after expanding aliases ("billion laughs" stop here)
_SEPARATOR = re.compile(r"^---", re.MULTILINE)


def _size_error(text: str) -> str | None:
    size = len(text.encode())
    if size > MAX_MANIFEST_BYTES:
        return f"the manifest is {size} bytes; capt reads at most {MAX_MANIFEST_BYTES}"
    for i, part in enumerate(_SEPARATOR.split(text), start=1):
        if len(part.encode()) > MAX_DOCUMENT_BYTES:
            return f"YAML document {i} is {len(part.encode())} bytes; one document may be at most {MAX_DOCUMENT_BYTES} (1 MiB)"
    return None


def _alias_error(text: str) -> str | None:
    """Refuse YAML whose aliases expand into more than MAX_EXPANDED_NODES nodes, counted on the
    node graph (each anchor's size once), before anything is expanded."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a recursive alias counts once
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        total = min(total, MAX_EXPANDED_NODES + 1)
        sizes[key] = total
        return total

    expanded = 0
    for root in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if root is not None:
            expanded += size(root)
        if expanded > MAX_EXPANDED_NODES:
            return (
                f"the YAML expands to more than {MAX_EXPANDED_NODES} nodes through its aliases (&anchor/*alias); "
                "write the repeated parts out or shorten them"
            )
    return None


def parse_documents(text: str, problems: list[Problem], warnings: list[str]) -> list[Doc]:
    """Split the YAML stream; check apiVersion/kind/metadata; skip (with a warning) unknown kinds."""
    if err := _size_error(text):
        problems.append(Problem(0, "", "", "", err))
        return []
    try:
        if err := _alias_error(text):
            problems.append(Problem(0, "", "", "", err))
            return []
        raw_docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.append(Problem(0, "", "", "", f"invalid YAML{where}: {getattr(exc, 'problem', exc)}"))
        return []

    docs: list[Doc] = []
    for index, body in enumerate(raw_docs, start=1):
        if body is None:
            continue
        if not isinstance(body, dict):
            problems.append(
                Problem(index, "", "", "", "a document must be a mapping with apiVersion and kind")
            )
            continue
        doc = Doc(index=index, body=body, problems=problems)
        doc.kind = str(body.get("kind") or "")
        doc.name = str(doc.raw("metadata.name") or "")
        if not doc.kind:
            doc.problem("kind", "is required")
            continue
        api_version = body.get("apiVersion")
        if not isinstance(api_version, str) or not api_version:
            doc.problem("apiVersion", "is required")
            continue
        doc.group, doc.version = split_api_version(api_version)
        if doc.kind not in KIND_GROUP:
            warnings.append(
                f"document {index}: {api_version} {doc.kind}/{doc.name} is not a kind capt uses; ignored"
            )
            continue
        expected_group = KIND_GROUP[doc.kind]
        if doc.group != expected_group:
            doc.problem(
                "apiVersion",
                f"{api_version!r} is not a {doc.kind} API version (group must be {expected_group or 'core'!r})",
            )
            continue
        if doc.version not in GROUPS[doc.group]:
            accepted = ", ".join(f"{doc.group}/{v}" if doc.group else v for v in GROUPS[doc.group])
            doc.problem("apiVersion", f"unsupported version {doc.version!r}; accepted: {accepted}")
            continue
        if not doc.name:
            doc.problem("metadata.name", "is required")
            continue
        if not is_dns1123_subdomain(doc.name):
            doc.problem(
                "metadata.name",
                f"{doc.name!r} is not a valid DNS-1123 name (lowercase letters, digits, '-' and '.')",
            )
        doc.namespace = str(doc.raw("metadata.namespace") or "default")
        if not is_dns1123_label(doc.namespace):
            # The namespace is half of the cluster's id in AWS (`<namespace>.<name>`): a label
            # has no dot, so the id is unambiguous, and fits the limits of AWS names and tags.
            doc.problem(
                "metadata.namespace",
                f"{doc.namespace!r} is not a valid namespace: it must be a DNS-1123 label "
                "(at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)",
            )
        doc.labels = doc.str_map("metadata.labels")
        docs.append(doc)
    return docs
