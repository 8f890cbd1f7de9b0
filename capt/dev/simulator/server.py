"""The simulator's two listeners.

- Workload API (HTTPS): one port for every simulated cluster. The TLS server name (SNI) picks the
  cluster — the worker connects through `CAPT_RESOLVE` but still says the load balancer's DNS
  name — and the SNI callback swaps in that cluster's context: a serving certificate issued from
  the cluster's CA for the endpoint name, and client-certificate verification against that same CA
  (so capt's admin certificate of cluster A is refused by cluster B). A name with no cluster, or a
  cluster whose control-plane instances are all down, gets an `unrecognized_name` alert: the
  worker sees it as unreachable, like a load balancer without healthy targets.
- Admin + SSM (HTTP): `GET /healthz`, `GET /sim/state`, `POST|DELETE /sim/faults`,
  `POST /sim/settings`, and the SSM JSON API (`POST /` with `X-Amz-Target: AmazonSSM.*`), which
  the worker reaches through `AWS_ENDPOINT_URL_SSM`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from capt.dev.simulator import kubeapi, kubeapi_objects
from capt.dev.simulator.ssm import SsmError
from capt.dev.simulator.world.core import World
from capt.dev.simulator.world.state import Cluster

log = logging.getLogger("capt.simulator")
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0


@contextlib.contextmanager
def _pem_path(pem: str) -> Iterator[str]:
    """A path that reads as `pem` while the block runs (memfd where possible), then nothing."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("capt-sim-serving", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem.encode())
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="capt-sim-")
    try:
        path = os.path.join(directory, "serving.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(pem)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cluster_context(cluster: Cluster) -> ssl.SSLContext:
    """The API server's TLS context for one cluster (built once, kept on the cluster)."""
    if cluster.tls is None:
        assert cluster.serving is not None
        cert, key = cluster.serving
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with _pem_path(key.rstrip("\n") + "\n" + cert) as path:
            ctx.load_cert_chain(path)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=cluster.ca_cert)
        cluster.tls = ctx
    return cluster.tls


def _groups(peer: dict | None) -> tuple[str, tuple[str, ...]]:
    user, groups = "", []
    for rdn in (peer or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, tuple(groups)


# --------------------------------------------------------------------------------------------
# workload API


class _KubeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver"
    sys_version = ""
    server: KubeServer

    def _serve(self) -> None:
        world = self.server.world
        key = getattr(self.connection, "capt_cluster", None)
        cluster = world.api_cluster(key)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if cluster is None:
            # The cluster's last control plane went away mid-connection: drop it, as an LB would.
            self.close_connection = True
            return
        user, groups = _groups(self.connection.getpeercert())
        try:
            reply = kubeapi.handle(
                world, cluster, self.command, self.path, body, self.headers.get("Content-Type", ""), groups
            )
        except Exception as err:  # noqa: BLE001 - a simulator bug: answer as an API server would
            log.exception("%s %s %s failed", cluster.name, self.command, self.path)
            reply = kubeapi_objects.status(
                500, "InternalError", f"simulator error: {type(err).__name__}: {err}"
            )
        data = reply.encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", user or "-")
        self.end_headers()
        self.wfile.write(data)
        log.debug("%s %s %s -> %d (%s)", cluster.name, self.command, self.path, reply.status, user)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("workload API: " + format, *args)


class KubeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], world: World) -> None:
        self.world = world
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.minimum_version = ssl.TLSVersion.TLSv1_2
        base.verify_mode = ssl.CERT_REQUIRED  # kept by the connection when the callback swaps contexts
        base.sni_callback = self._sni
        self.base_context = base
        super().__init__(address, _KubeHandler)

    def _sni(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        try:
            cluster = self.world.api_cluster(name)
            if cluster is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            sock.context = cluster_context(cluster)
            sock.capt_cluster = cluster.key  # type: ignore[union-attr]
            return None
        except Exception:  # noqa: BLE001 - an exception here would only say "callback failed"
            log.exception("SNI callback for %r failed", name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.base_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log.debug("TLS handshake from %s failed: %s", client_address, err)
            return
        try:
            tls.settimeout(IDLE_TIMEOUT)
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError) as err:
            log.debug("connection from %s ended: %s", client_address, err)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("workload API connection %s failed", client_address, exc_info=True)


# --------------------------------------------------------------------------------------------
# admin + SSM


class _AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "capt-simulator"
    sys_version = ""
    server: AdminServer

    def _reply(
        self, code: int, body: Any, content_type: str = "application/json", headers: dict | None = None
    ) -> None:
        data = (json.dumps(body, indent=None, default=str) if not isinstance(body, str) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:
        world = self.server.world
        if self.path == "/healthz":
            self._reply(200, "ok", "text/plain")
        elif self.path == "/sim/state":
            self._reply(200, world.snapshot())
        else:
            self._reply(404, {"error": f"no such endpoint {self.path}"})

    def do_DELETE(self) -> None:
        if self.path == "/sim/faults":
            self.server.world.clear_faults()
            self._reply(200, {"faults": self.server.world.faults.to_dict()})
        else:
            self._reply(404, {"error": f"no such endpoint {self.path}"})

    def do_POST(self) -> None:
        world = self.server.world
        target = self.headers.get("X-Amz-Target")
        try:
            body = self._body()
        except ValueError:
            self._reply(
                400,
                {"__type": "SerializationException", "message": "invalid JSON"},
                "application/x-amz-json-1.1",
            )
            return
        if target is not None:
            try:
                with world.lock:
                    out = world.ssm.handle(target, body)
                self._reply(200, out, "application/x-amz-json-1.1")
            except SsmError as err:
                self._reply(
                    400,
                    {"__type": err.code, "message": err.message},
                    "application/x-amz-json-1.1",
                    {"x-amzn-ErrorType": err.code},
                )
            return
        try:
            if self.path == "/sim/faults":
                world.set_fault(
                    str(body.get("kind", "")),
                    str(body.get("target", "")),
                    enabled=bool(body.get("enabled", True)),
                    seconds=body.get("seconds"),
                    count=body.get("count"),
                )
                self._reply(200, {"faults": world.faults.to_dict()})
            elif self.path == "/sim/settings":
                with world.lock:
                    world.settings.update(body)
                self._reply(200, {"settings": dict(vars(world.settings))})
            else:
                self._reply(404, {"error": f"no such endpoint {self.path}"})
        except (ValueError, TypeError) as err:
            self._reply(400, {"error": str(err)})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("admin: " + format, *args)


class AdminServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], world: World) -> None:
        self.world = world
        super().__init__(address, _AdminHandler)


def serve_in_thread(server: ThreadingHTTPServer, name: str) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.5}, name=name, daemon=True
    )
    thread.start()
    return thread


def bind_check(host: str, port: int) -> None:
    """Fail early with a clear message if the port is taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
