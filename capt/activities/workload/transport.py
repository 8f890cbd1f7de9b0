"""How capt reaches a workload cluster's API server: the error classes Temporal's retry policy keys
on, CAPT_RESOLVE (connect to one address, verify another name), TLS contexts built from the
cluster's CA and admin secrets with the key never on disk, their cache, and one HTTPS connection."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

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
