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

import http.client
import json
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from capt.activities.workload.transport import (
    _CLIENT_CERT_REJECTED,
    _DROPPED,
    DEFAULT_TIMEOUT,
    MESSAGE_LIMIT,
    PAGE_LIMIT,
    RESOLVE_ENV,
    USER_AGENT,
    ClientTLS,
    WorkloadAuthError,
    WorkloadError,
    WorkloadRequestError,
    WorkloadServerError,
    WorkloadTLSError,
    WorkloadUnreachable,
    _Connection,
    parse_resolve,
    resolve_target,
)

# --------------------------------------------------------------------------------------------
# HTTP


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
