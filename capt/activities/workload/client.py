"""An HTTPS client for a workload cluster's Kubernetes API, with mutual TLS.

Standard library only (`ssl` + `http.client`): capt needs a dozen requests, not the kubernetes
Python client.

Trust and identity
- The server certificate is verified against the cluster CA (and only it: no system roots) and its
  name against the control-plane endpoint's host, as kubectl does with a kubeconfig.
- capt presents the admin client certificate (CN kubernetes-admin, O system:masters).
- `ssl.SSLContext.load_cert_chain` only reads files. The key goes into an anonymous in-memory file
  (`memfd_create`, read back through /proc/self/fd) that never has a name on any file system; where
  that is unavailable, into a 0600 file in a private 0700 temporary directory removed right after
  loading. Either way the key leaves no trace once the context is built. Contexts are cached per
  (region, CA secret, admin secret) for a few minutes so that polling activities do not read
  Secrets Manager every time; an authentication failure drops the cached context.

Endpoint mapping (`CAPT_RESOLVE`)
    CAPT_RESOLVE="api.example.com:6443=127.0.0.1:16443[,host:port=addr:port...]"
like `curl --resolve`: a request for host:port connects to addr:port instead, while the TLS
server name (SNI) and the certificate's hostname check still use the original host. Nothing else
about the request changes (Host header included), so a server reached this way must present a
certificate for the real endpoint name. Bracket IPv6 literals: `[::1]:6443`.

Load balancer DNS names are only known at run time, so the source may be a pattern: `*` (any host)
or `*.suffix` (any host ending in `.suffix`) for the host, `*` (any port) for the port — e.g. the
local stack's `*:*=127.0.0.1:16443` sends every workload API endpoint to the workload simulator,
which picks the cluster by SNI. An exact host wins over a suffix, a longer suffix over a shorter
one, `*` comes last; for the same host, an exact port wins over `*`.

Errors (all subclasses of `CaptAwsError`, so `activities.aws.errors.to_application_error` maps
them like every other capt activity error):
- retryable: `WorkloadUnreachable` (refused, reset, timeout, DNS), `WorkloadServerError` (5xx, 429);
- non-retryable: `WorkloadAuthError` (401/403, or our client certificate rejected in the TLS
  handshake), `WorkloadTLSError` (the server's certificate is not from the cluster CA or not for
  the endpoint's name), `WorkloadRequestError` (any other unexpected 4xx: a bug, not a blip),
  `WorkloadConfigError` (a malformed `CAPT_RESOLVE`).

A refused client certificate is easy to mistake for a network blip under TLS 1.3: the client's
handshake completes before the server checks the certificate, and the server's alert is often
lost to the reset of the request already in flight. When a fresh TLS 1.3 connection drops before
any answer, the client therefore makes one TLS 1.2 handshake (no request) where the check happens
inside the handshake, and reports `WorkloadAuthError` if that is refused for the certificate.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from capt.activities.aws.errors import CaptAwsError

RESOLVE_ENV = "CAPT_RESOLVE"
DEFAULT_TIMEOUT = 10.0
USER_AGENT = "capt/0.1"
# Cached SSL contexts live this long: a rotated admin certificate is picked up within it.
CONTEXT_TTL_SECONDS = 300.0
# Kubernetes list pagination.
PAGE_LIMIT = 500
# Error bodies are quoted in messages up to this many characters.
MESSAGE_LIMIT = 300

# A connection that ended without an answer (the server closed or reset it).
_DROPPED = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    ssl.SSLSyscallError,
)

# TLS alerts a server sends when it refuses our client certificate (OpenSSL reason codes).
_CLIENT_CERT_REJECTED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)


# --------------------------------------------------------------------------------------------
# errors


class WorkloadError(CaptAwsError):
    """Base of the workload-cluster client's errors."""

    non_retryable = False


class WorkloadUnreachable(WorkloadError):
    """No HTTP answer: connection refused or reset, timeout, name resolution. Retryable: an API
    server that is still starting, or a load balancer without healthy targets, looks like this."""

    non_retryable = False


class WorkloadServerError(WorkloadError):
    """The API server answered 5xx or 429 (overloaded, etcd unavailable): retryable."""

    non_retryable = False


class WorkloadAuthError(WorkloadError):
    """The API server refused capt's admin credentials (401/403 or a rejected client certificate).
    Not retryable: the same certificate will be refused again."""

    non_retryable = True


class WorkloadTLSError(WorkloadError):
    """The server's certificate is not signed by the cluster CA or not valid for the endpoint's
    name: capt is not talking to this cluster's API server. Not retryable."""

    non_retryable = True


class WorkloadRequestError(WorkloadError):
    """An unexpected 4xx answer (bad request, unprocessable): retrying sends the same request."""

    non_retryable = True


class WorkloadConfigError(WorkloadError):
    """The client's configuration (e.g. CAPT_RESOLVE) is malformed."""

    non_retryable = True


# --------------------------------------------------------------------------------------------
# CAPT_RESOLVE


ANY_PORT = 0  # a `*` port in a CAPT_RESOLVE source


def _split_host_port(text: str, *, pattern: bool = False) -> tuple[str, int]:
    """host:port → (host, port); with `pattern`, the host may be `*` or `*.suffix` and the port `*`
    (returned as ANY_PORT)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"expected [ipv6]:port, got {text!r}")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"expected host:port, got {text!r}")
    if not host:
        raise ValueError(f"missing host in {text!r}")
    if "*" in host and not (pattern and (host == "*" or (host.startswith("*.") and "*" not in host[1:]))):
        raise ValueError(f"a host pattern is `*` or `*.suffix`, got {host!r}")
    if host.startswith("*.") and len(host) == 2:
        raise ValueError(f"missing suffix in {text!r}")
    if pattern and port_text == "*":
        return host, ANY_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port is not a number in {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


def parse_resolve(text: str | None) -> dict[tuple[str, int], tuple[str, int]]:
    """`host:port=addr:port[,...]` → {(host, port): (addr, port)}; host names compare lowercase.
    Sources may be patterns (`*`, `*.suffix`, port `*` = ANY_PORT): see `resolve_target`."""
    mapping: dict[tuple[str, int], tuple[str, int]] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        source, sep, target = entry.partition("=")
        if not sep:
            raise WorkloadConfigError(f"{RESOLVE_ENV}: expected host:port=addr:port, got {entry.strip()!r}")
        try:
            host, port = _split_host_port(source, pattern=True)
            addr, addr_port = _split_host_port(target)
        except ValueError as err:
            raise WorkloadConfigError(f"{RESOLVE_ENV}: {err}") from None
        mapping[(host.lower(), port)] = (addr, addr_port)
    return mapping


def resolve_target(
    host: str, port: int, mapping: Mapping[tuple[str, int], tuple[str, int]]
) -> tuple[str, int] | None:
    """Where to connect for host:port, if the mapping redirects it: the most specific source
    that matches (exact host, then the longest `*.suffix`, then `*`; exact port before `*`)."""
    host = host.lower()
    candidates = [host]
    labels = host.split(".")
    candidates += ["*." + ".".join(labels[i:]) for i in range(1, len(labels))]
    candidates.append("*")
    for name in candidates:
        for p in (port, ANY_PORT):
            target = mapping.get((name, p))
            if target is not None:
                return target
    return None


# --------------------------------------------------------------------------------------------
# TLS contexts from in-memory PEM


@contextlib.contextmanager
def _pem_file(pem: str) -> Iterator[str]:
    """A path that reads as `pem` for as long as the block runs, then leaves no trace.

    memfd: an anonymous RAM-backed file only this process holds. Fallback: a 0600 file in a private
    0700 directory, removed in `finally`.
    """
    data = pem.encode()
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("capt-client-cert", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
            return
        finally:
            os.close(fd)
    directory = tempfile.mkdtemp(prefix="capt-tls-")  # mode 0700
    try:
        path = os.path.join(directory, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class ClientTLS:
    """The client's TLS contexts: `context` for requests; `tls12_probe`, the same trust and
    identity limited to TLS 1.2, only to diagnose a connection the server drops right after a
    TLS 1.3 handshake (see `WorkloadClient._diagnose_drop`)."""

    context: ssl.SSLContext
    tls12_probe: ssl.SSLContext | None = None


def _context(ca_cert: str, pem_path: str, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if maximum is not None:
        ctx.maximum_version = maximum
    ctx.load_verify_locations(cadata=ca_cert)
    ctx.load_cert_chain(pem_path)
    return ctx


def tls_context(ca_cert: str, client_cert: str, client_key: str) -> ClientTLS:
    """Client contexts that trust only `ca_cert` and present the client certificate."""
    with _pem_file(client_key.rstrip("\n") + "\n" + client_cert) as path:
        return ClientTLS(
            context=_context(ca_cert, path), tls12_probe=_context(ca_cert, path, ssl.TLSVersion.TLSv1_2)
        )


class ContextCache:
    """Client TLS contexts by credential identity (e.g. secret ARNs), each kept for `ttl` seconds."""

    def __init__(self, ttl: float = CONTEXT_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[float, ClientTLS]] = {}

    def get(self, key: tuple, build: Callable[[], ClientTLS]) -> ClientTLS:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        ctx = build()
        with self._lock:
            self._entries[key] = (now, ctx)
        return ctx

    def drop(self, key: tuple) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CONTEXTS = ContextCache()


# --------------------------------------------------------------------------------------------
# HTTP


class _Connection(http.client.HTTPSConnection):
    """HTTPS to host:port (SNI, hostname check and Host header all say `host`), optionally over a
    TCP connection to another address (`connect_to`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext,
        timeout: float,
        connect_to: tuple[str, int] | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._connect_to = connect_to
        self.handshake_done = False
        self.tls_version: str | None = None

    def connect(self) -> None:
        address = self._connect_to or (self.host, self.port)
        sock = socket.create_connection(address, self.timeout, self.source_address)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.handshake_done = True
        self.tls_version = self.sock.version()


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def message(self) -> str:
        """The Kubernetes Status message if there is one, else the start of the body."""
        doc = self.json()
        if isinstance(doc, dict) and doc.get("message"):
            text = str(doc["message"])
        else:
            text = self.body.decode("utf-8", "replace").strip()
        return text[:MESSAGE_LIMIT]


def api_path(group_version: str) -> tuple[str, ...]:
    """`v1` → ("api", "v1"); `storage.k8s.io/v1` → ("apis", "storage.k8s.io", "v1")."""
    group, sep, version = group_version.rpartition("/")
    return ("apis", group, version) if sep else ("api", version)


def _path(*segments: str, query: Mapping[str, str] | None = None) -> str:
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if query:
        path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
    return path


class WorkloadClient:
    """One workload cluster's API server. Keeps one keep-alive connection; not thread-safe (an
    activity uses its own client)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ClientTLS | ssl.SSLContext,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_to: tuple[str, int] | None = None,
        on_auth_failure: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls if isinstance(tls, ClientTLS) else ClientTLS(tls)
        self.timeout = timeout
        self.connect_to = connect_to
        self._on_auth_failure = on_auth_failure
        self._conn: _Connection | None = None

    @classmethod
    def for_endpoint(
        cls,
        host: str,
        port: int,
        tls: ClientTLS | ssl.SSLContext,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        resolve: str | None = None,
        on_auth_failure: Callable[[], None] | None = None,
    ) -> WorkloadClient:
        """A client for host:port, honouring CAPT_RESOLVE (or `resolve`, same syntax)."""
        mapping = parse_resolve(os.environ.get(RESOLVE_ENV) if resolve is None else resolve)
        return cls(
            host,
            port,
            tls,
            timeout=timeout,
            connect_to=resolve_target(host, port, mapping),
            on_auth_failure=on_auth_failure,
        )

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> WorkloadClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _auth_failed(self, message: str) -> WorkloadAuthError:
        if self._on_auth_failure is not None:
            self._on_auth_failure()
        return WorkloadAuthError(message)

    def _exchange(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> Response:
        """One request, reusing the kept connection; a kept connection the server has closed in
        the meantime is replaced once (the request never reached the server)."""
        for reuse in (self._conn is not None, False):
            if self._conn is None:
                self._conn = _Connection(
                    self.host,
                    self.port,
                    context=self.tls.context,
                    timeout=self.timeout,
                    connect_to=self.connect_to,
                )
            conn = self._conn
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except _DROPPED as err:
                self.close()
                if reuse:
                    continue
                if conn.handshake_done and conn.tls_version == "TLSv1.3":
                    raise self._diagnose_drop(err) from None
                raise self._transport_error(err) from None
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise self._transport_error(err) from None
            if resp.will_close:
                self.close()
            return Response(resp.status, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def _where(self) -> str:
        where = self.endpoint
        if self.connect_to:
            where += f" (connecting to {self.connect_to[0]}:{self.connect_to[1]})"
        return where

    def _diagnose_drop(self, err: BaseException) -> WorkloadError:
        """A fresh TLS 1.3 connection dropped before any answer.

        In TLS 1.3 the client's handshake completes before the server has checked the client
        certificate; a server that refuses it sends an alert and closes, and that alert is often
        lost to the TCP reset of the request we already sent. So the drop alone cannot tell
        "our certificate was refused" from "the server went away". A TLS 1.2 handshake (no request
        sent) settles it: there the client certificate is checked inside the handshake, and a
        refusal arrives as an alert before the handshake completes.
        """
        probe_ctx = self.tls.tls12_probe
        if probe_ctx is not None:
            address = self.connect_to or (self.host, self.port)
            try:
                with (
                    socket.create_connection(address, self.timeout) as sock,
                    probe_ctx.wrap_socket(sock, server_hostname=self.host),
                ):
                    pass
            except ssl.SSLError as probe_err:
                if probe_err.reason in _CLIENT_CERT_REJECTED:
                    return self._transport_error(probe_err)
            except OSError:
                pass
        return WorkloadUnreachable(
            f"{self._where()}: the server closed the connection right after the TLS handshake "
            f"({type(err).__name__}: {err})"
        )

    def _transport_error(self, err: BaseException) -> WorkloadError:
        where = self._where()
        if isinstance(err, ssl.SSLCertVerificationError):
            return WorkloadTLSError(
                f"{where}: the server's certificate does not verify against the cluster CA for this "
                f"endpoint: {err.verify_message or err}"
            )
        if isinstance(err, ssl.SSLError) and err.reason in _CLIENT_CERT_REJECTED:
            return self._auth_failed(
                f"{where}: the server rejected capt's admin client certificate ({err.reason})"
            )
        if isinstance(err, TimeoutError | socket.timeout):
            return WorkloadUnreachable(f"{where}: timed out after {self.timeout:g}s")
        return WorkloadUnreachable(f"{where}: {type(err).__name__}: {err}")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (),
    ) -> Response:
        """Send a request. 401/403 raise WorkloadAuthError, 5xx and 429 WorkloadServerError
        unless listed in `ok`; every other status is returned to the caller."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = content_type
        resp = self._exchange(method, path, data, headers)
        if resp.status in ok:
            return resp
        if resp.status == 401:
            raise self._auth_failed(
                f"{self.endpoint}: 401 Unauthorized: the API server does not accept capt's admin client "
                f"certificate (is it signed by this cluster's CA?): {resp.message()}"
            )
        if resp.status == 403:
            raise self._auth_failed(f"{self.endpoint}: 403 Forbidden for {method} {path}: {resp.message()}")
        if resp.status == 429 or resp.status >= 500:
            raise WorkloadServerError(f"{self.endpoint}: {resp.status} for {method} {path}: {resp.message()}")
        return resp

    def _unexpected(self, method: str, path: str, resp: Response) -> WorkloadRequestError:
        return WorkloadRequestError(f"{self.endpoint}: {resp.status} for {method} {path}: {resp.message()}")

    def _list(self, *segments: str, query: Mapping[str, str] | None = None) -> list[dict]:
        items: list[dict] = []
        params = dict(query or {}, limit=str(PAGE_LIMIT))
        while True:
            path = _path(*segments, query=params)
            resp = self.request("GET", path)
            if resp.status != 200:
                raise self._unexpected("GET", path, resp)
            doc = resp.json() or {}
            items.extend(doc.get("items") or [])
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    # -- operations -----------------------------------------------------------------------

    def readyz(self) -> tuple[bool, int, str]:
        """(ready, HTTP status, the answer's first lines). 5xx means "not ready", not an error."""
        resp = self.request("GET", "/readyz", ok=(200, 500, 503))
        return resp.status == 200, resp.status, resp.body.decode("utf-8", "replace").strip()[:MESSAGE_LIMIT]

    def list_nodes(self, label_selector: str | None = None) -> list[dict]:
        return self._list(
            "api", "v1", "nodes", query={"labelSelector": label_selector} if label_selector else None
        )

    def get_node(self, name: str) -> dict | None:
        path = _path("api", "v1", "nodes", name)
        resp = self.request("GET", path)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise self._unexpected("GET", path, resp)
        return resp.json()

    def set_unschedulable(self, name: str, unschedulable: bool = True) -> dict | None:
        """Cordon (or uncordon) with a JSON merge patch, as `kubectl cordon` does. None if the Node
        does not exist."""
        path = _path("api", "v1", "nodes", name)
        resp = self.request(
            "PATCH",
            path,
            body={"spec": {"unschedulable": True if unschedulable else None}},
            content_type="application/merge-patch+json",
        )
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise self._unexpected("PATCH", path, resp)
        return resp.json()

    def delete_node(self, name: str) -> bool:
        """True if the Node existed (and is now being deleted); a missing Node is already done."""
        path = _path("api", "v1", "nodes", name)
        resp = self.request("DELETE", path)
        if resp.status == 404:
            return False
        if resp.status not in (200, 202):
            raise self._unexpected("DELETE", path, resp)
        return True

    def list_pods_on_node(self, node_name: str) -> list[dict]:
        return self._list("api", "v1", "pods", query={"fieldSelector": f"spec.nodeName={node_name}"})

    def evict(self, namespace: str, name: str) -> Response:
        """POST a policy/v1 Eviction. Returns the answer: 200/201 evicted, 404 already gone, 429
        blocked by a PodDisruptionBudget (the caller retries), anything else for the caller to judge."""
        path = _path("api", "v1", "namespaces", namespace, "pods", name, "eviction")
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        return self.request("POST", path, body=body, ok=(429, 500))

    # -- any kind: lists across namespaces, deletes -------------------------------------------

    def list_all(self, group_version: str, plural: str, *, field_selector: str | None = None) -> list[dict]:
        """Every object of a kind, across namespaces for namespaced kinds (`GET /api/v1/services`,
        `GET /apis/storage.k8s.io/v1/storageclasses`), paginated."""
        query = {"fieldSelector": field_selector} if field_selector else None
        return self._list(*api_path(group_version), plural, query=query)

    def delete_object(
        self, group_version: str, plural: str, name: str, namespace: str | None = None
    ) -> dict | None:
        """DELETE one object. Returns the API server's answer (the object, now carrying
        `deletionTimestamp` while finalizers hold it, or a Status), or None if it was already gone
        (404): deleting is idempotent."""
        segments = api_path(group_version)
        if namespace:
            segments += ("namespaces", namespace)
        path = _path(*segments, plural, name)
        resp = self.request("DELETE", path)
        if resp.status == 404:
            return None
        if resp.status not in (200, 202):
            raise self._unexpected("DELETE", path, resp)
        return resp.json() or {}

    def create_or_replace_secret(self, secret: dict) -> str:
        """Create the Secret, or replace it if it exists (409). Returns "created" or "replaced"."""
        meta = secret["metadata"]
        ns, name = meta["namespace"], meta["name"]
        collection = _path("api", "v1", "namespaces", ns, "secrets")
        item = _path("api", "v1", "namespaces", ns, "secrets", name)
        for _ in range(3):
            resp = self.request("POST", collection, body=secret)
            if resp.status in (200, 201):
                return "created"
            if resp.status != 409:
                raise self._unexpected("POST", collection, resp)
            # Secrets allow an unconditional update (no resourceVersion needed).
            resp = self.request("PUT", item, body=secret)
            if resp.status == 200:
                return "replaced"
            if resp.status != 404:  # 404: deleted in between (e.g. the token cleaner): create again
                raise self._unexpected("PUT", item, resp)
        raise WorkloadServerError(f"{self.endpoint}: Secret {ns}/{name} keeps appearing and disappearing")
