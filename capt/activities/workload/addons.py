"""ClusterResourceSets: apply the addons' ConfigMap documents to a workload cluster.

CAPI's ClusterResourceSet controller reads each ConfigMap of the set and applies every object in
its values to the workload cluster. capt does the same with one activity, `apply_addons`:

- every value is multi-document YAML; empty documents are skipped. All documents are parsed and
  checked (kind, apiVersion, metadata.name) before anything is sent, so a bad document fails the
  activity at once (non-retryable) with the ConfigMap and key named, and nothing is half applied;
- each object's resource (plural name, namespaced or not) comes from API discovery
  (`GET /api/v1`, `GET /apis/<group>/<version>`), once per group/version per call;
- each object is server-side applied: `PATCH …/<plural>/<name>?fieldManager=capt&force=true`
  with `Content-Type: application/apply-patch+yaml`. The body is the document serialized as
  JSON (JSON is YAML, and kube-apiserver parses it as such — kubectl sends JSON too). A
  namespaced object without a namespace goes to `default`, as kubectl does. Applying is
  idempotent: 201 = created, 200 = configured (unchanged objects answer 200 too);
- an unreachable API server (or 5xx/429) raises a retryable error; 401/403 and TLS trust errors
  are non-retryable (see client.py); an object the API server refuses (an unknown kind, 4xx) is
  reported in `failures` while the other objects are still applied.

Only names go in and out: kinds, namespaces, object names, the addon's own name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from capt.activities.aws import user_secrets
from capt.activities.aws.errors import CaptAwsError
from capt.activities.aws.models import AwsResult
from capt.activities.aws.session import aws_activity
from capt.activities.workload.activities import WorkloadAccess, connect
from capt.activities.workload.client import WorkloadClient, _path
from capt.spec.models import AddonResource, AddonSpec

FIELD_MANAGER = "capt"
APPLY_PATCH = "application/apply-patch+yaml"


class AddonDocumentError(CaptAwsError):
    """A ConfigMap value that is not valid YAML or holds an object without kind, apiVersion or
    metadata.name. Retrying applies the same text: non-retryable."""

    non_retryable = True


class ApplyAddonsRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    addons: tuple[AddonSpec, ...]
    # Where the addons' Secret resources are stored (capt/activities/aws/user_secrets.py); None for
    # addons of ConfigMaps only (and in requests recorded before Secret resources existed).
    namespace: str | None = None
    cluster_name: str | None = None


class AppliedObject(BaseModel):
    model_config = ConfigDict(frozen=True)

    addon: str
    api_version: str
    kind: str
    namespace: str | None  # None: cluster-scoped
    name: str
    action: Literal["created", "configured"]


class AddonFailure(BaseModel):
    model_config = ConfigDict(frozen=True)

    addon: str
    config_map: str
    key: str
    api_version: str
    kind: str
    name: str
    reason: str


class ApplyAddonsResult(AwsResult):
    applied: tuple[AppliedObject, ...] = ()
    failures: tuple[AddonFailure, ...] = ()

    def failed_addons(self) -> frozenset[str]:
        return frozenset(f.addon for f in self.failures)


# --------------------------------------------------------------------------------------------
# documents (pure)


class Document(BaseModel):
    model_config = ConfigDict(frozen=True)

    addon: str
    config_map: str
    key: str
    body: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def parse_documents(addon: str, config_map: str, key: str, text: str) -> list[Document]:
    """The objects in one ConfigMap value (multi-document YAML; empty documents skipped).
    Raises AddonDocumentError naming the ConfigMap and key."""
    where = f"addon {addon}: ConfigMap {config_map}, key {key}"
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise AddonDocumentError(f"{where}: not valid YAML: {err}") from None
    docs = []
    for index, body in enumerate(loaded):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise AddonDocumentError(f"{where}: document {index + 1} is not a mapping")
        meta = body.get("metadata")
        missing = [
            field
            for field, present in (
                ("apiVersion", isinstance(body.get("apiVersion"), str) and body["apiVersion"]),
                ("kind", isinstance(body.get("kind"), str) and body["kind"]),
                (
                    "metadata.name",
                    isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"],
                ),
            )
            if not present
        ]
        if missing:
            raise AddonDocumentError(f"{where}: document {index + 1} has no {', '.join(missing)}")
        docs.append(Document(addon=addon, config_map=config_map, key=key, body=body))
    return docs


def addon_documents(
    addons: tuple[AddonSpec, ...], secrets: Mapping[str, Mapping[str, bytes]] | None = None
) -> list[Document]:
    """Every object of every addon, in order: resources as the ClusterResourceSet lists them,
    keys sorted within each. A Secret resource's values come from `secrets` (name -> key -> bytes)."""
    docs: list[Document] = []
    for addon in addons:
        config_maps = dict(addon.config_maps)
        listed = {r.name for r in addon.resources if r.kind == "ConfigMap"}
        # Resources in the CRS's order; ConfigMaps the spec holds without listing them (specs
        # built by hand) after them.
        resources = list(addon.resources) + [
            AddonResource(kind="ConfigMap", name=n) for n, _ in addon.config_maps if n not in listed
        ]
        for resource in resources:
            if resource.kind == "Secret":
                values = (secrets or {}).get(resource.name)
                if values is None:
                    raise AddonDocumentError(f"{addon.name}: Secret {resource.name} was not read")
                try:
                    entries = tuple((k, v.decode()) for k, v in sorted(values.items()))
                except UnicodeDecodeError:
                    raise AddonDocumentError(
                        f"{addon.name}: Secret {resource.name} holds binary data, not YAML documents"
                    ) from None
            else:
                entries = config_maps.get(resource.name, ())
            for key, text in entries:
                docs.extend(parse_documents(addon.name, resource.name, key, text))
    return docs


def group_version_path(api_version: str) -> tuple[str, ...]:
    """v1 → (api, v1); apps/v1 → (apis, apps, v1)."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return ("apis", group, version)
    return ("api", api_version)


# --------------------------------------------------------------------------------------------
# discovery + apply


class _Unresolved(Exception):
    """The API server does not serve this kind (yet): a per-object failure."""


class Discovery:
    """kind → (plural, namespaced) per group/version, one GET per group/version."""

    def __init__(self, client: WorkloadClient) -> None:
        self.client = client
        self._cache: dict[str, dict[str, tuple[str, bool]] | None] = {}

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        if api_version not in self._cache:
            self._cache[api_version] = self._fetch(api_version)
        kinds = self._cache[api_version]
        if kinds is None:
            raise _Unresolved(f"the server does not serve {api_version}")
        if kind not in kinds:
            raise _Unresolved(f'no matches for kind "{kind}" in version "{api_version}"')
        return kinds[kind]

    def _fetch(self, api_version: str) -> dict[str, tuple[str, bool]] | None:
        path = _path(*group_version_path(api_version))
        resp = self.client.request("GET", path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise self.client._unexpected("GET", path, resp)
        kinds: dict[str, tuple[str, bool]] = {}
        for res in (resp.json() or {}).get("resources") or []:
            name = res.get("name") or ""
            if "/" in name or not res.get("kind"):  # subresources (pods/eviction, …)
                continue
            kinds.setdefault(res["kind"], (name, bool(res.get("namespaced"))))
        return kinds


def apply_document(client: WorkloadClient, discovery: Discovery, doc: Document) -> AppliedObject:
    plural, namespaced = discovery.resource(doc.api_version, doc.kind)
    # A copy, JSON-safe: an unquoted YAML timestamp becomes its text.
    body = json.loads(json.dumps(doc.body, default=str))
    namespace: str | None = None
    if namespaced:
        namespace = body["metadata"].get("namespace") or "default"
        body["metadata"]["namespace"] = namespace
    segments = group_version_path(doc.api_version)
    if namespace is not None:
        segments += ("namespaces", namespace)
    path = _path(*segments, plural, doc.name, query={"fieldManager": FIELD_MANAGER, "force": "true"})
    resp = client.request("PATCH", path, body=body, content_type=APPLY_PATCH)
    if resp.status not in (200, 201):
        raise _Unresolved(f"{resp.status} for PATCH {path}: {resp.message()}")
    return AppliedObject(
        addon=doc.addon,
        api_version=doc.api_version,
        kind=doc.kind,
        namespace=namespace,
        name=doc.name,
        action="created" if resp.status == 201 else "configured",
    )


def apply_all(client: WorkloadClient, docs: list[Document]) -> ApplyAddonsResult:
    discovery = Discovery(client)
    applied, failures = [], []
    for doc in docs:
        try:
            applied.append(apply_document(client, discovery, doc))
        except _Unresolved as err:
            failures.append(
                AddonFailure(
                    addon=doc.addon,
                    config_map=doc.config_map,
                    key=doc.key,
                    api_version=doc.api_version,
                    kind=doc.kind,
                    name=doc.name,
                    reason=str(err),
                )
            )
    return ApplyAddonsResult(applied=tuple(applied), failures=tuple(failures))


@aws_activity
def apply_addons(req: ApplyAddonsRequest) -> ApplyAddonsResult:
    """Server-side apply every object of the addons' ConfigMaps to the workload cluster."""
    secret_names = sorted({r.name for a in req.addons for r in a.resources if r.kind == "Secret"})
    values = {}
    if secret_names:
        if req.namespace is None or req.cluster_name is None:
            raise AddonDocumentError("Secret resources need the cluster's namespace and name")
        region = req.access.region
        values = {n: user_secrets.read(region, req.namespace, req.cluster_name, n) for n in secret_names}
    docs = addon_documents(req.addons, values)  # validate everything before touching the cluster
    with connect(req.access) as client:
        return apply_all(client, docs)


ADDON_ACTIVITIES = [apply_addons]
