"""Where Temporal is: the connection settings the worker and the CLI share.

The standard Temporal environment and profile configuration (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS, ...) through the SDK's `envconfig`, explicit values on
top, then capt's defaults.
"""

from __future__ import annotations

from typing import Any

from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


def connect_config(address: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """Client.connect arguments: the Temporal env/profile configuration, explicit values on
    top, then the defaults (localhost:7233, namespace "default")."""
    cfg: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    if address:
        cfg["target_host"] = address
    if namespace:
        cfg["namespace"] = namespace
    cfg.setdefault("target_host", DEFAULT_ADDRESS)
    cfg.setdefault("namespace", DEFAULT_NAMESPACE)
    return cfg
