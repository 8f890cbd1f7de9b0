"""`capt codec server`: Temporal's remote codec endpoint over capt's payload keys.

The Web UI and `temporal workflow show --codec-endpoint URL` POST a JSON `Payloads` message to
`<URL>/decode` (or `/encode`) and get the same shape back (Temporal's remote codec protocol; the
JSON is protobuf's, bytes in base64). The browser calls it directly, so the endpoint answers
CORS preflights for the configured UI origins. With a token, every request must carry
`Authorization: Bearer <token>` (the Web UI sends the user's token when configured to pass it).

It decodes anything its keys can open: bind it to localhost, or put it behind authentication.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from capt.client.codec import AesGcmCodec

log = logging.getLogger("capt.codec_server")
MAX_BODY = 16 * 1024 * 1024


def make_handler(
    codec: AesGcmCodec, origins: Sequence[str], token: str | None
) -> type[BaseHTTPRequestHandler]:
    allowed = set(origins)

    class Handler(BaseHTTPRequestHandler):
        server_version = "capt-codec"

        def log_message(self, fmt: str, *args) -> None:  # no payloads in logs: the path only
            log.debug("%s %s", self.command, self.path)

        def _cors(self) -> None:
            origin = self.headers.get("Origin")
            if origin and ("*" in allowed or origin in allowed):
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Credentials", "true")
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
                self.send_header("Vary", "Origin")

        def _reply(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
            self.send_response(status)
            self._cors()
            if body:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
            self._reply(200)

        def do_POST(self) -> None:  # noqa: N802
            # The Web UI adds a query (`/decode?preserveStorageRefs=true`): route on the path only.
            op = urllib.parse.urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
            if op not in ("encode", "decode"):
                self._reply(404, b'{"error": "POST /encode or /decode"}')
                return
            if token is not None:
                sent = self.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                    self._reply(401, b'{"error": "unauthorized"}')
                    return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413, b'{"error": "too large"}')
                return
            try:
                payloads = json_format.Parse(self.rfile.read(length), Payloads())
                fn = codec.encode if op == "encode" else codec.decode
                out = asyncio.run(fn(list(payloads.payloads)))
            except Exception as err:  # noqa: BLE001 - a bad request, a payload of another key set
                self._reply(400, f'{{"error": "{type(err).__name__}"}}'.encode())
                return
            self._reply(200, json_format.MessageToJson(Payloads(payloads=out)).encode())

    return Handler


def serve(
    codec: AesGcmCodec, host: str, port: int, origins: Sequence[str], token: str | None
) -> ThreadingHTTPServer:
    """A running server (serve_forever on the caller's thread, or shutdown())."""
    return ThreadingHTTPServer((host, port), make_handler(codec, origins, token))
