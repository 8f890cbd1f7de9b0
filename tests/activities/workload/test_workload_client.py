"""The workload-cluster client against a local TLS server that plays a small Kubernetes API.

The server's certificate is issued from a CA made by capt/activities/kubeadm/pki.py and it requires a
client certificate signed by that CA (CERT_REQUIRED), like kube-apiserver with --client-ca-file:
a passing request proves the generated PKI works end to end (serving cert, admin client cert,
hostname verification through the CAPT_RESOLVE mapping).
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import secrets as sm
from capt.activities.aws import token_secrets
from capt.activities.kubeadm import pki
from capt.activities.kubeadm import tokens as ktokens
from capt.activities.workload import activities as wa
from capt.activities.workload import client as wc
from capt.activities.workload import transport
from capt.activities.workload.drain import drain
from capt.activities.workload.objects import node_info, parse_provider_id, pod_action

LB_HOST = "capt-test-apiserver-0123456789.elb.ap-northeast-2.amazonaws.com"
LB_PORT = 6443
NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------------
# PKI (generated once: RSA keys cost tens of milliseconds each)


@dataclass(frozen=True)
class Material:
    pki: pki.ClusterPKI
    admin: pki.KeyPair
    serving: pki.KeyPair
    other_ca: pki.KeyPair
    other_admin: pki.KeyPair


@pytest.fixture(scope="module")
def material() -> Material:
    cluster = pki.new_cluster_pki()
    other = pki.new_ca(pki.CLUSTER_CA_CN)  # same name, different key: must not be trusted
    return Material(
        pki=cluster,
        admin=pki.issue_admin_cert(cluster.ca),
        serving=pki.issue_serving_cert(cluster.ca, "kube-apiserver", dns_names=(LB_HOST, "kubernetes")),
        other_ca=other,
        other_admin=pki.issue_admin_cert(other),
    )


# --------------------------------------------------------------------------------------------
# a small fake Kubernetes API


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
    return target


def make_node(
    name: str, instance_id: str, az: str = "ap-northeast-2a", ready: str = "True", **labels: str
) -> dict:
    return {
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **labels},
            "creationTimestamp": "2026-05-01T11:50:00Z",
        },
        "spec": {"providerID": f"aws:///{az}/{instance_id}"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "lastTransitionTime": "2026-05-01T11:51:00Z"},
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
                    "lastTransitionTime": "2026-05-01T11:52:30Z",
                    "lastHeartbeatTime": "2026-05-01T11:59:30Z",
                },
            ],
            "nodeInfo": {"kubeletVersion": "v1.31.2"},
        },
    }


def make_pod(
    ns: str,
    name: str,
    node: str,
    *,
    owner: str | None = None,
    mirror: bool = False,
    deleting: str | None = None,
) -> dict:
    meta: dict = {"namespace": ns, "name": name}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    if deleting:
        meta["deletionTimestamp"] = deleting
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": "Running"}}


@dataclass
class FakeKube:
    nodes: dict[str, dict] = field(default_factory=dict)
    pods: dict[str, dict] = field(default_factory=dict)  # "ns/name" → pod
    secrets: dict[str, dict] = field(default_factory=dict)  # "ns/name" → secret
    # "ns/name" → how many evictions get 429 before one succeeds (-1: always)
    pdb_blocks: dict[str, int] = field(default_factory=dict)
    # "ns/name": an evicted pod lingers (terminating) through this many more pod listings
    linger: dict[str, int] = field(default_factory=dict)
    readyz: tuple[int, str] = (200, "ok")
    force_status: int | None = None  # answer every API request with this status
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    client_subjects: list[tuple] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, url: str, content_type: str | None, body: bytes) -> tuple[int, object]:
        with self.lock:
            self.requests.append((method, url, content_type))
            parts = urlsplit(url)
            path = [p for p in parts.path.split("/") if p]
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if path == ["readyz"]:
                return self.readyz
            if self.force_status is not None:
                return self.force_status, _status(self.force_status, "Forced", f"forced {self.force_status}")
            doc = json.loads(body) if body else None
            if path[:2] != ["api", "v1"]:
                return 404, _status(404, "NotFound", "no such path")
            rest = path[2:]
            if rest == ["nodes"] and method == "GET":
                return 200, self._page(sorted(self.nodes), self.nodes, query)
            if len(rest) == 2 and rest[0] == "nodes":
                return self._node(method, rest[1], content_type, doc)
            if rest == ["pods"] and method == "GET":
                selector = query.get("fieldSelector", "")
                assert selector.startswith("spec.nodeName="), selector
                node = selector.split("=", 1)[1]
                keys = [k for k, p in sorted(self.pods.items()) if p["spec"]["nodeName"] == node]
                for k in keys:  # lingering evicted pods finish terminating as time passes
                    if k in self.linger and self.pods[k]["metadata"].get("deletionTimestamp"):
                        self.linger[k] -= 1
                        if self.linger[k] < 0:
                            del self.pods[k], self.linger[k]
                keys = [k for k in keys if k in self.pods]
                return 200, self._page(keys, self.pods, query)
            if len(rest) == 5 and rest[0] == "namespaces" and rest[2] == "pods" and rest[4] == "eviction":
                return self._evict(rest[1], rest[3], doc)
            if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] == "secrets":
                return self._secret(method, rest[1], rest[3] if len(rest) > 3 else None, doc)
            return 404, _status(404, "NotFound", f"no route for {method} {parts.path}")

    def _page(self, keys: list[str], store: dict, query: dict) -> dict:
        limit = int(query.get("limit", "0")) or len(keys) or 1
        start = int(query.get("continue", "0"))
        page = keys[start : start + limit]
        meta = {"continue": str(start + limit)} if start + limit < len(keys) else {}
        return {"kind": "List", "metadata": meta, "items": [store[k] for k in page]}

    def _node(self, method: str, name: str, content_type: str | None, doc: dict | None) -> tuple[int, object]:
        node = self.nodes.get(name)
        if node is None:
            return 404, _status(404, "NotFound", f'nodes "{name}" not found')
        if method == "GET":
            return 200, node
        if method == "PATCH":
            if content_type != "application/merge-patch+json":
                return 415, _status(415, "UnsupportedMediaType", str(content_type))
            return 200, _merge(node, doc or {})
        if method == "DELETE":
            del self.nodes[name]
            return 200, _status(200, "", "deleted")
        return 405, _status(405, "MethodNotAllowed", method)

    def _evict(self, ns: str, name: str, doc: dict | None) -> tuple[int, object]:
        assert doc and doc["kind"] == "Eviction" and doc["apiVersion"] == "policy/v1", doc
        assert doc["metadata"] == {"name": name, "namespace": ns}, doc
        key = f"{ns}/{name}"
        if key not in self.pods:
            return 404, _status(404, "NotFound", f'pods "{name}" not found')
        blocks = self.pdb_blocks.get(key, 0)
        if blocks != 0:
            self.pdb_blocks[key] = blocks - 1 if blocks > 0 else blocks
            return 429, _status(
                429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."
            )
        if key in self.linger:
            self.pods[key]["metadata"]["deletionTimestamp"] = "2026-05-01T12:00:00Z"
        else:
            del self.pods[key]
        return 201, _status(201, "", "evicted")

    def _secret(self, method: str, ns: str, name: str | None, doc: dict | None) -> tuple[int, object]:
        if method == "POST" and name is None:
            assert doc is not None
            key = f"{ns}/{doc['metadata']['name']}"
            if key in self.secrets:
                return 409, _status(
                    409, "AlreadyExists", f'secrets "{doc["metadata"]["name"]}" already exists'
                )
            self.secrets[key] = doc
            return 201, doc
        if method == "PUT" and name is not None:
            key = f"{ns}/{name}"
            if key not in self.secrets:
                return 404, _status(404, "NotFound", f'secrets "{name}" not found')
            self.secrets[key] = doc  # type: ignore[assignment]
            return 200, doc
        return 405, _status(405, "MethodNotAllowed", method)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as kube-apiserver
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def _serve(self) -> None:
        kube: FakeKube = self.server.kube  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with kube.lock:
            kube.client_subjects.append(self.connection.getpeercert()["subject"])  # type: ignore[attr-defined]
        status, payload = kube.handle(self.command, self.path, self.headers.get("Content-Type"), body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, *args: object) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ctx: ssl.SSLContext, kube: FakeKube) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ctx, self.kube = ctx, kube
        self.handshake_errors: list[str] = []

    def finish_request(self, request, client_address) -> None:  # runs in the connection's thread
        try:
            request = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            self.handshake_errors.append(getattr(err, "reason", None) or str(err))
            return
        super().finish_request(request, client_address)


@dataclass
class Server:
    kube: FakeKube
    port: int
    httpd: _TLSServer

    @property
    def resolve(self) -> str:
        return f"{LB_HOST}:{LB_PORT}=127.0.0.1:{self.port}"


def _server_context(
    material: Material, tmp_path_factory: pytest.TempPathFactory, kube: FakeKube
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    path = tmp_path_factory.mktemp("apiserver") / "serving.pem"  # the test server's own key
    path.write_text(material.serving.key + material.serving.cert)
    ctx.load_cert_chain(str(path))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=material.pki.ca.cert)

    def record_sni(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        kube.server_names.append(server_name)

    ctx.sni_callback = record_sni
    return ctx


@pytest.fixture
def server(material: Material, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kube = FakeKube()
    httpd = _TLSServer(_server_context(material, tmp_path_factory, kube), kube)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(kube=kube, port=httpd.server_address[1], httpd=httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()


def client_for(
    server: Server,
    material: Material,
    *,
    admin: pki.KeyPair | None = None,
    ca: str | None = None,
    host: str = LB_HOST,
    timeout: float = 5.0,
) -> wc.WorkloadClient:
    admin = admin or material.admin
    tls = transport.tls_context(ca or material.pki.ca.cert, admin.cert, admin.key)
    return wc.WorkloadClient.for_endpoint(host, LB_PORT, tls, resolve=server.resolve, timeout=timeout)


# --------------------------------------------------------------------------------------------
# pure parts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", {}),
        ("api.example.com:6443=127.0.0.1:16443", {("api.example.com", 6443): ("127.0.0.1", 16443)}),
        (
            " API.Example.com:6443=127.0.0.1:1 , b.example:443=10.0.0.2:8443,",
            {("api.example.com", 6443): ("127.0.0.1", 1), ("b.example", 443): ("10.0.0.2", 8443)},
        ),
        ("[fd00::1]:6443=[::1]:7443", {("fd00::1", 6443): ("::1", 7443)}),
    ],
)
def test_parse_resolve(text: str, expected: dict) -> None:
    assert transport.parse_resolve(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "api.example.com:6443",
        "api.example.com=127.0.0.1:1",
        "a:6443=b:http",
        "a:0=b:1",
        "::1:6443=a:1",
        "a:1=[::1]",
    ],
)
def test_parse_resolve_rejects_malformed(text: str) -> None:
    with pytest.raises(transport.WorkloadConfigError, match="CAPT_RESOLVE"):
        transport.parse_resolve(text)


@pytest.mark.parametrize(
    "provider_id, expected",
    [
        ("aws:///ap-northeast-2a/i-0123456789abcdef0", ("ap-northeast-2a", "i-0123456789abcdef0")),
        ("aws:///i-0123456789abcdef0", (None, "i-0123456789abcdef0")),
        ("aws://ap-northeast-2c/i-01234567", ("ap-northeast-2c", "i-01234567")),
        ("aws:///ap-northeast-2a/not-an-instance", None),
        ("gce://project/zone/vm", None),
        ("aws:///a/b/i-01234567", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_provider_id(provider_id: str | None, expected: tuple | None) -> None:
    pid = parse_provider_id(provider_id)
    assert (None if pid is None else (pid.availability_zone, pid.instance_id)) == expected


def test_node_info_reads_ready_condition_provider_id_and_version() -> None:
    info = node_info(
        make_node(
            "ip-10-0-1-10.ec2.internal",
            "i-0aaaaaaaaaaaaaaa1",
            **{"node-role.kubernetes.io/control-plane": ""},
        )
    )
    assert info.name == "ip-10-0-1-10.ec2.internal"
    assert (info.instance_id, info.availability_zone) == ("i-0aaaaaaaaaaaaaaa1", "ap-northeast-2a")
    assert info.ready and info.ready_status == "True" and info.ready_reason == "KubeletReady"
    assert info.ready_since == dt.datetime(2026, 5, 1, 11, 52, 30, tzinfo=dt.UTC)
    assert info.kubelet_version == "v1.31.2" and info.control_plane and not info.unschedulable

    unknown = node_info(
        {
            "metadata": {"name": "n"},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
        }
    )
    assert (unknown.ready, unknown.ready_status, unknown.instance_id) == (False, "Unknown", None)
    assert node_info({"metadata": {"name": "fresh"}}).ready_status == "Unknown"  # no conditions yet
    not_ready = node_info(make_node("n", "i-0aaaaaaaaaaaaaaa2", ready="False"))
    assert (not_ready.ready, not_ready.ready_status) == (False, "False")


def test_node_info_keeps_every_condition_with_its_transition_time() -> None:
    info = node_info(make_node("n", "i-0aaaaaaaaaaaaaaa3", ready="False"))
    assert [(c.type, c.status, c.since) for c in info.conditions] == [
        ("MemoryPressure", "False", dt.datetime(2026, 5, 1, 11, 51, tzinfo=dt.UTC)),
        ("Ready", "False", dt.datetime(2026, 5, 1, 11, 52, 30, tzinfo=dt.UTC)),
    ]
    ready = info.condition("Ready")
    assert ready is not None and ready.reason == "KubeletNotReady"
    assert info.condition("DiskPressure") is None
    # A condition without status or time (a node-problem detector writing little) is kept as Unknown.
    sparse = node_info({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "KernelDeadlock"}]}})
    assert [(c.type, c.status, c.since) for c in sparse.conditions] == [("KernelDeadlock", "Unknown", None)]


@pytest.mark.parametrize(
    "pod, skip_after, expected",
    [
        (make_pod("default", "web", "n"), None, "evict"),
        (make_pod("default", "web", "n", owner="ReplicaSet"), None, "evict"),
        (make_pod("kube-system", "proxy", "n", owner="DaemonSet"), None, "skip-daemonset"),
        (make_pod("kube-system", "kube-apiserver-n", "n", mirror=True), None, "skip-mirror"),
        (make_pod("default", "old", "n", deleting="2026-05-01T11:59:59Z"), None, "terminating"),
        (
            make_pod("default", "old", "n", deleting="2026-05-01T11:59:59Z"),
            dt.timedelta(seconds=5),
            "terminating",
        ),
        (make_pod("default", "old", "n", deleting="2026-05-01T11:50:00Z"), dt.timedelta(seconds=5), None),
    ],
)
def test_pod_action(pod: dict, skip_after: dt.timedelta | None, expected: str | None) -> None:
    assert pod_action(pod, NOW, skip_after) == expected


# --------------------------------------------------------------------------------------------
# TLS: the generated PKI end to end


def test_mutual_tls_with_generated_pki_through_resolve_mapping(server: Server, material: Material) -> None:
    with client_for(server, material) as client:
        assert client.connect_to == ("127.0.0.1", server.port)
        assert client.readyz() == (True, 200, "ok")
        assert client.readyz()[0]  # second request on the kept connection
    # The server saw capt's admin identity, and the TLS server name was the load balancer's name.
    subject = dict(kv for rdn in server.kube.client_subjects[0] for kv in rdn)
    assert subject == {"commonName": "kubernetes-admin", "organizationName": "system:masters"}
    assert server.kube.server_names == [LB_HOST]  # one handshake for both requests


def test_client_certificate_from_another_ca_is_rejected(server: Server, material: Material) -> None:
    with (
        client_for(server, material, admin=material.other_admin) as client,
        pytest.raises(transport.WorkloadAuthError) as err,
    ):
        client.readyz()
    assert "rejected capt's admin client certificate" in str(err.value)
    assert err.value.non_retryable
    # The server refused the handshake (its thread records that right after sending the alert).
    deadline = time.monotonic() + 5
    while not server.httpd.handshake_errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.httpd.handshake_errors
    assert not server.kube.requests  # nothing was served


def test_server_certificate_from_another_ca_is_not_trusted(server: Server, material: Material) -> None:
    with (
        client_for(server, material, ca=material.other_ca.cert) as client,
        pytest.raises(transport.WorkloadTLSError) as err,
    ):
        client.readyz()
    assert "does not verify against the cluster CA" in str(err.value) and err.value.non_retryable


def test_hostname_is_verified_for_the_original_host(server: Server, material: Material) -> None:
    # Mapped to the same server, but the certificate is not for this name.
    tls = transport.tls_context(material.pki.ca.cert, material.admin.cert, material.admin.key)
    other = "other.example.test"
    client = wc.WorkloadClient.for_endpoint(
        other, LB_PORT, tls, resolve=f"{other}:{LB_PORT}=127.0.0.1:{server.port}"
    )
    with client, pytest.raises(transport.WorkloadTLSError, match="other.example.test"):
        client.readyz()
    # Connecting to the server's address directly fails the same way: its certificate has no IP SAN.
    direct = wc.WorkloadClient("127.0.0.1", server.port, tls)
    with direct, pytest.raises(transport.WorkloadTLSError):
        direct.readyz()


def test_resolve_comes_from_the_environment(
    server: Server, material: Material, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(transport.RESOLVE_ENV, f"unrelated.example:1=127.0.0.1:2,{server.resolve}")
    tls = transport.tls_context(material.pki.ca.cert, material.admin.cert, material.admin.key)
    with wc.WorkloadClient.for_endpoint(LB_HOST, LB_PORT, tls) as client:
        assert client.connect_to == ("127.0.0.1", server.port)
        assert client.readyz()[0]


def test_key_material_leaves_no_file(
    material: Material, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(os.listdir("/proc/self/fd"))
    transport.tls_context(material.pki.ca.cert, material.admin.cert, material.admin.key)
    assert set(os.listdir("/proc/self/fd")) == before  # memfds closed
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]
    # The fallback (no memfd): a private file, gone after loading.
    monkeypatch.delattr(os, "memfd_create")
    seen: list[tuple[str, int, int]] = []
    real = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, *args: object, **kwargs: object) -> None:
        st, dst = os.stat(certfile), os.stat(os.path.dirname(certfile))
        seen.append((certfile, st.st_mode & 0o777, dst.st_mode & 0o777))
        real(self, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    transport.tls_context(material.pki.ca.cert, material.admin.cert, material.admin.key)
    assert seen and all(mode == 0o600 and dmode == 0o700 for _, mode, dmode in seen)
    assert all(not os.path.exists(os.path.dirname(path)) for path, _, _ in seen)


def test_connection_refused_and_timeout_are_retryable(material: Material) -> None:
    import socket

    tls = transport.tls_context(material.pki.ca.cert, material.admin.cert, material.admin.key)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = wc.WorkloadClient.for_endpoint(
        LB_HOST, LB_PORT, tls, resolve=f"{LB_HOST}:{LB_PORT}=127.0.0.1:{port}"
    )
    with pytest.raises(transport.WorkloadUnreachable, match="Connection refused") as err:
        refused.readyz()
    assert not err.value.non_retryable
    with socket.socket() as silent:  # accepts TCP, never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        slow = wc.WorkloadClient.for_endpoint(
            LB_HOST,
            LB_PORT,
            tls,
            resolve=f"{LB_HOST}:{LB_PORT}=127.0.0.1:{silent.getsockname()[1]}",
            timeout=0.2,
        )
        with pytest.raises(transport.WorkloadUnreachable, match="timed out"):
            slow.readyz()


@pytest.mark.parametrize(
    "status, error, retryable",
    [
        (401, transport.WorkloadAuthError, False),
        (403, transport.WorkloadAuthError, False),
        (503, transport.WorkloadServerError, True),
        (429, transport.WorkloadServerError, True),
        (400, transport.WorkloadRequestError, False),
    ],
)
def test_http_errors(server: Server, material: Material, status: int, error: type, retryable: bool) -> None:
    server.kube.force_status = status
    server.kube.nodes["n1"] = make_node("n1", "i-0aaaaaaaaaaaaaaa1")
    with client_for(server, material) as client, pytest.raises(error) as err:
        client.list_nodes()
    assert err.value.non_retryable is not retryable
    assert str(status) in str(err.value)


def test_readyz_not_ready_is_an_answer(server: Server, material: Material) -> None:
    server.kube.readyz = (500, "[-]etcd failed: reason withheld\nreadyz check failed")
    with client_for(server, material) as client:
        ready, status, body = client.readyz()
    assert (ready, status) == (False, 500) and "etcd failed" in body


# --------------------------------------------------------------------------------------------
# nodes


def test_list_get_cordon_delete_nodes(
    server: Server, material: Material, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wc, "PAGE_LIMIT", 2)  # force pagination with `continue`
    for i in range(5):
        server.kube.nodes[f"n{i}"] = make_node(f"n{i}", f"i-0aaaaaaaaaaaaaaa{i}")
    with client_for(server, material) as client:
        assert [n["metadata"]["name"] for n in client.list_nodes()] == [f"n{i}" for i in range(5)]
        assert sum(1 for m, url, _ in server.kube.requests if url.startswith("/api/v1/nodes?")) == 3
        assert client.get_node("n1")["spec"]["providerID"] == "aws:///ap-northeast-2a/i-0aaaaaaaaaaaaaaa1"
        assert client.get_node("missing") is None

        assert client.set_unschedulable("n1")["spec"]["unschedulable"] is True
        assert server.kube.nodes["n1"]["spec"]["unschedulable"] is True
        assert server.kube.nodes["n1"]["spec"]["providerID"]  # a merge patch keeps the rest
        assert server.kube.requests[-1] == ("PATCH", "/api/v1/nodes/n1", "application/merge-patch+json")
        client.set_unschedulable("n1", False)
        assert "unschedulable" not in server.kube.nodes["n1"]["spec"]
        assert client.set_unschedulable("missing") is None

        assert client.delete_node("n2") is True
        assert "n2" not in server.kube.nodes
        assert client.delete_node("n2") is False  # 404: already gone


# --------------------------------------------------------------------------------------------
# drain


def _drain_fixture(kube: FakeKube) -> None:
    kube.nodes["n1"] = make_node("n1", "i-0aaaaaaaaaaaaaaa1")
    kube.pods["default/web-1"] = make_pod("default", "web-1", "n1", owner="ReplicaSet")
    kube.pods["default/web-2"] = make_pod("default", "web-2", "n1", owner="ReplicaSet")
    kube.pods["kube-system/kube-proxy-x"] = make_pod("kube-system", "kube-proxy-x", "n1", owner="DaemonSet")
    kube.pods["kube-system/etcd-n1"] = make_pod("kube-system", "etcd-n1", "n1", mirror=True)
    kube.pods["default/elsewhere"] = make_pod("default", "elsewhere", "n2")


def test_drain_evicts_waits_and_leaves_daemonset_and_mirror_pods(server: Server, material: Material) -> None:
    _drain_fixture(server.kube)
    server.kube.linger["default/web-2"] = 1  # terminates one listing after its eviction
    with client_for(server, material) as client:
        report = drain(client, "n1", timeout=5, interval=0.01)
    assert report.drained and not report.timed_out
    assert report.evicted == ["default/web-1", "default/web-2"]
    assert sorted(report.skipped) == ["kube-system/etcd-n1", "kube-system/kube-proxy-x"]
    assert report.passes == 3  # evict; web-2 still terminating; empty
    assert server.kube.nodes["n1"]["spec"]["unschedulable"] is True  # cordoned first
    assert set(server.kube.pods) == {"kube-system/kube-proxy-x", "kube-system/etcd-n1", "default/elsewhere"}
    evictions = [url for m, url, _ in server.kube.requests if url.endswith("/eviction")]
    assert evictions == [
        "/api/v1/namespaces/default/pods/web-1/eviction",
        "/api/v1/namespaces/default/pods/web-2/eviction",
    ]


def test_drain_retries_a_pdb_blocked_eviction_until_it_is_allowed(server: Server, material: Material) -> None:
    _drain_fixture(server.kube)
    server.kube.pdb_blocks["default/web-1"] = 2  # two 429s, then allowed
    beats: list[object] = []
    with client_for(server, material) as client:
        report = drain(client, "n1", timeout=5, interval=0.01, heartbeat=beats.append)
    assert report.drained and report.blocked == {}
    assert report.evicted == ["default/web-2", "default/web-1"]
    evictions = [url for m, url, _ in server.kube.requests if url.endswith("web-1/eviction")]
    assert len(evictions) == 3
    assert len(beats) >= report.passes


def test_drain_reports_a_pdb_that_never_allows_it_after_the_timeout(
    server: Server, material: Material
) -> None:
    _drain_fixture(server.kube)
    server.kube.pdb_blocks["default/web-1"] = -1
    started = time.monotonic()
    with client_for(server, material) as client:
        report = drain(client, "n1", timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 5  # bounded by the timeout (generous: shared CI cores)
    assert report.timed_out and not report.drained
    assert list(report.blocked) == ["default/web-1"]
    assert report.blocked["default/web-1"].startswith(
        "429: Cannot evict pod as it would violate the pod's disruption budget"
    )
    assert report.evicted == ["default/web-2"]
    assert report.passes >= 2  # kept retrying
    assert sum(1 for m, url, _ in server.kube.requests if url.endswith("web-1/eviction")) == report.passes


def test_drain_of_a_missing_node_is_done(server: Server, material: Material) -> None:
    with client_for(server, material) as client:
        report = drain(client, "gone", timeout=1)
    assert report.drained and not report.node_found and report.passes == 0


def test_drain_skips_long_terminating_pods_when_asked(server: Server, material: Material) -> None:
    server.kube.nodes["n1"] = make_node("n1", "i-0aaaaaaaaaaaaaaa1")
    server.kube.pods["default/stuck"] = make_pod("default", "stuck", "n1", deleting="2026-05-01T11:00:00Z")
    with client_for(server, material) as client:
        waiting = drain(client, "n1", timeout=0, now=lambda: NOW)
        forgetting = drain(
            client, "n1", timeout=0, now=lambda: NOW, skip_deleted_after=dt.timedelta(seconds=1)
        )
    assert (waiting.drained, waiting.terminating) == (False, ["default/stuck"])
    assert forgetting.drained


# --------------------------------------------------------------------------------------------
# secrets


def test_create_or_replace_secret(server: Server, material: Material) -> None:
    token = ktokens.new_token(NOW)
    body = ktokens.bootstrap_token_secret(token)
    with client_for(server, material) as client:
        assert client.create_or_replace_secret(body) == "created"
        refreshed = ktokens.bootstrap_token_secret(ktokens.refreshed(token, NOW + dt.timedelta(minutes=10)))
        assert client.create_or_replace_secret(refreshed) == "replaced"
    stored = server.kube.secrets[f"kube-system/{token.secret_name}"]
    assert stored == refreshed


# --------------------------------------------------------------------------------------------
# the activities: credentials from Secrets Manager, nothing secret in or out


@pytest.fixture
def stored_pki(aws: None, material: Material, monkeypatch: pytest.MonkeyPatch) -> sm.ClusterPKIRefs:
    """The module's PKI stored in (moto) Secrets Manager through ensure_pki, as a cluster's would be."""
    cas = {
        pki.CLUSTER_CA_CN: material.pki.ca,
        pki.ETCD_CA_CN: material.pki.etcd_ca,
        pki.FRONT_PROXY_CA_CN: material.pki.front_proxy_ca,
    }
    monkeypatch.setattr(sm.kpki, "new_ca", lambda cn, **_: cas[cn])
    monkeypatch.setattr(sm.kpki, "new_service_account_keys", lambda: material.pki.sa)
    monkeypatch.setattr(sm.kpki, "issue_admin_cert", lambda ca, **_: material.admin)
    transport.CONTEXTS.clear()
    refs = sm.ensure_pki(
        sm.client("ap-northeast-2"), sm.ClusterPKIRequest(cluster_name="c1", region="ap-northeast-2")
    )
    yield refs
    transport.CONTEXTS.clear()


def _access(refs: sm.ClusterPKIRefs) -> wa.WorkloadAccess:
    return wa.WorkloadAccess(
        region="ap-northeast-2", endpoint_host=LB_HOST, endpoint_port=LB_PORT, pki=refs, timeout_seconds=5
    )


SECRET_MARKERS = ("-----BEGIN", "PRIVATE KEY")


def _through_temporal(fn: object, result: object) -> object:
    """The result as a workflow receives it: through the pydantic converter, typed by the activity."""
    ret_type = activity._Definition.from_callable(fn).ret_type  # type: ignore[arg-type]
    conv = pydantic_data_converter.payload_converter
    return conv.from_payloads(conv.to_payloads([result]), [ret_type])[0]


def _assert_no_secret(model: object, material: Material, token: ktokens.BootstrapToken | None = None) -> None:
    text = model.model_dump_json()  # type: ignore[attr-defined]
    assert not any(m in text for m in SECRET_MARKERS)
    assert material.admin.key.splitlines()[1] not in text
    assert not ktokens.TOKEN_PATTERN.search(text)
    if token is not None:
        assert token.secret not in text


def test_activities_end_to_end(
    server: Server, material: Material, stored_pki: sm.ClusterPKIRefs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(transport.RESOLVE_ENV, server.resolve)
    _drain_fixture(server.kube)
    server.kube.nodes["n2"] = make_node("n2", "i-0bbbbbbbbbbbbbbb2", az="ap-northeast-2c", ready="False")
    env = ActivityEnvironment()
    access = _access(stored_pki)
    _assert_no_secret(access, material)

    readyz = env.run(wa.workload_readyz, wa.WorkloadReadyzRequest(access=access))
    assert (readyz.reachable, readyz.ready, readyz.status_code) == (True, True, 200)
    assert readyz.aws_calls == {"secrets-manager:GetSecretValue": 2}  # CA + admin, once
    again = env.run(wa.workload_readyz, wa.WorkloadReadyzRequest(access=access))
    assert again.aws_calls == {}  # the TLS context is cached

    nodes = env.run(wa.list_workload_nodes, wa.ListNodesRequest(access=access))
    assert [(n.name, n.instance_id, n.availability_zone, n.ready) for n in nodes.nodes] == [
        ("n1", "i-0aaaaaaaaaaaaaaa1", "ap-northeast-2a", True),
        ("n2", "i-0bbbbbbbbbbbbbbb2", "ap-northeast-2c", False),
    ]
    by_instance = env.run(
        wa.list_workload_nodes, wa.ListNodesRequest(access=access, instance_ids=("i-0bbbbbbbbbbbbbbb2",))
    )
    assert [n.name for n in by_instance.nodes] == ["n2"]
    by_name = env.run(wa.list_workload_nodes, wa.ListNodesRequest(access=access, names=("n1", "nope")))
    assert [n.name for n in by_name.nodes] == ["n1"]
    assert ("GET", "/api/v1/nodes/nope", None) in server.kube.requests

    cordon = env.run(wa.cordon_node, wa.CordonRequest(access=access, node_name="n2"))
    assert cordon.found and server.kube.nodes["n2"]["spec"]["unschedulable"]

    server.kube.pdb_blocks["default/web-1"] = 1
    heartbeats: list[object] = []
    env.on_heartbeat = lambda *d: heartbeats.append(d)
    drained = env.run(
        wa.drain_node,
        wa.DrainRequest(access=access, node_name="n1", timeout_seconds=5, poll_interval_seconds=0.01),
    )
    assert drained.drained and drained.evicted == ("default/web-2", "default/web-1") and drained.blocked == ()
    assert heartbeats

    # timeout 0: one pass, as a workflow looping with durable timers would call it. The evicted pod
    # is not confirmed gone within the pass; the next call finds the node empty.
    one_pass = env.run(wa.drain_node, wa.DrainRequest(access=access, node_name="n2", timeout_seconds=0))
    assert (one_pass.drained, one_pass.timed_out, one_pass.passes) == (False, True, 1)
    assert one_pass.evicted == one_pass.terminating == ("default/elsewhere",)
    next_pass = env.run(wa.drain_node, wa.DrainRequest(access=access, node_name="n2", timeout_seconds=0))
    assert next_pass.drained and next_pass.evicted == ()

    deleted = env.run(wa.delete_node, wa.NodeRequest(access=access, node_name="n1"))
    gone = env.run(wa.delete_node, wa.NodeRequest(access=access, node_name="n1"))
    assert (deleted.found, gone.found) == (True, False)

    for fn, result in (
        (wa.workload_readyz, readyz),
        (wa.list_workload_nodes, nodes),
        (wa.cordon_node, cordon),
        (wa.drain_node, drained),
        (wa.drain_node, one_pass),
        (wa.delete_node, deleted),
    ):
        _assert_no_secret(result, material)
        assert _through_temporal(fn, result) == result


def test_bootstrap_token_secret_activity(
    server: Server, material: Material, stored_pki: sm.ClusterPKIRefs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(transport.RESOLVE_ENV, server.resolve)
    smc = sm.client("ap-northeast-2")
    ref = token_secrets.ensure_token(
        smc,
        token_secrets.BootstrapTokenRequest(cluster_name="c1", region="ap-northeast-2", machine_name="m1"),
        NOW,
    )
    token = token_secrets.read_bootstrap_token(smc, ref.secret_arn)
    env = ActivityEnvironment()
    req = wa.BootstrapTokenSecretRequest(access=_access(stored_pki), token_secret_arn=ref.secret_arn)
    _assert_no_secret(req, material, token)

    first = env.run(wa.create_bootstrap_token_secret, req)
    assert (first.action, first.token_id, first.secret_name) == (
        "created",
        token.id,
        f"bootstrap-token-{token.id}",
    )
    stored = server.kube.secrets[f"kube-system/bootstrap-token-{token.id}"]
    assert stored == ktokens.bootstrap_token_secret(token)

    token_secrets.refresh_token(
        smc,
        token_secrets.BootstrapTokenRefreshRequest(region="ap-northeast-2", secret_arn=ref.secret_arn),
        NOW + dt.timedelta(minutes=10),
    )
    second = env.run(wa.create_bootstrap_token_secret, req)
    assert second.action == "replaced" and second.expiration == NOW + dt.timedelta(minutes=25)
    import base64

    expiration = base64.b64decode(
        server.kube.secrets[f"kube-system/bootstrap-token-{token.id}"]["data"]["expiration"]
    ).decode()
    assert expiration == "2026-05-01T12:25:00Z"
    for result in (first, second):
        _assert_no_secret(result, material, token)
        assert _through_temporal(wa.create_bootstrap_token_secret, result) == result


def test_polling_activities_report_unreachable_mutating_ones_raise(
    stored_pki: sm.ClusterPKIRefs, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(transport.RESOLVE_ENV, f"{LB_HOST}:{LB_PORT}=127.0.0.1:{port}")
    env = ActivityEnvironment()
    access = _access(stored_pki)
    readyz = env.run(wa.workload_readyz, wa.WorkloadReadyzRequest(access=access))
    assert (readyz.reachable, readyz.ready) == (False, False) and "refused" in readyz.detail
    nodes = env.run(wa.list_workload_nodes, wa.ListNodesRequest(access=access))
    assert (nodes.reachable, nodes.nodes) == (False, ())
    with pytest.raises(ApplicationError) as err:
        env.run(wa.cordon_node, wa.CordonRequest(access=access, node_name="n1"))
    assert err.value.type == "WorkloadUnreachable" and not err.value.non_retryable


def test_auth_failure_is_non_retryable_and_drops_the_cached_context(
    server: Server, material: Material, stored_pki: sm.ClusterPKIRefs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(transport.RESOLVE_ENV, server.resolve)
    env = ActivityEnvironment()
    access = _access(stored_pki)
    assert env.run(wa.workload_readyz, wa.WorkloadReadyzRequest(access=access)).ready
    server.kube.force_status = 403
    with pytest.raises(ApplicationError) as err:
        env.run(wa.list_workload_nodes, wa.ListNodesRequest(access=access))
    assert (
        err.value.non_retryable
        and err.value.type == "WorkloadAuthError"
        and "403 Forbidden" in err.value.message
    )
    server.kube.force_status = None
    # The next activity reads the credentials again (they may have been rotated).
    assert env.run(wa.workload_readyz, wa.WorkloadReadyzRequest(access=access)).aws_calls == {
        "secrets-manager:GetSecretValue": 2
    }
