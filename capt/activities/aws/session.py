"""boto3 clients for capt's activities: configuration, retries and AWS call accounting.

- Clients honour the standard environment: AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>
  (boto3 reads them itself; `capt dev` points them at moto), AWS_REGION / AWS_DEFAULT_REGION
  when no region is passed, and the usual credential chain. Nothing is capt-specific, so the
  same worker runs against real AWS.
- botocore's *standard* retry mode absorbs short throttling bursts and 5xx inside one
  activity attempt; Temporal's activity retries do the long backoff.
- Every request sent is counted per operation: into the Prometheus counter
  `capt_aws_calls_total{service,operation}` (all attempts, including failed ones) and into
  the running activity's tally, which `aws_activity` returns in the result's `aws_calls` so
  the workflow can keep totals.
- Clients are cached (creating one loads service models, ~0.1 s) and shared by the
  activity threads; boto3 clients are thread-safe. The per-activity tally is thread-local:
  a sync activity runs in one executor thread from start to finish.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ParamValidationError
from prometheus_client import Counter
from temporalio import activity

from capt.activities.aws.errors import to_application_error

AWS_CALLS = Counter("capt_aws_calls", "AWS API requests sent by capt activities", ["service", "operation"])

RETRY_CONFIG = Config(retries={"mode": "standard"}, connect_timeout=10, read_timeout=30)

_lock = threading.Lock()
_session: boto3.session.Session | None = None
_clients: dict[tuple, Any] = {}
_hooks: list[tuple[str, Callable[..., Any]]] = []
_local = threading.local()


def default_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def _count_request(event_name: str, **_: Any) -> None:
    # event_name is "before-send.<service-id>.<Operation>", emitted once per HTTP attempt.
    _, service, operation = event_name.split(".", 2)
    AWS_CALLS.labels(service=service, operation=operation).inc()
    tally = getattr(_local, "tally", None)
    if tally is not None:
        key = f"{service}:{operation}"
        tally[key] = tally.get(key, 0) + 1


def _note_operation(model: Any, **_: Any) -> None:
    # "before-parameter-build": the call botocore is about to validate. A ParamValidationError
    # (raised right after, before anything is sent) does not say which call it refused.
    _local.operation = model.name


def _cache_key(service: str, region: str) -> tuple:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")))
    creds = (os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_PROFILE"))
    return (service, region, env, creds)


def client(service: str, region: str | None = None) -> Any:
    """A (cached) boto3 client for `service` in `region` (default: AWS_REGION/AWS_DEFAULT_REGION)."""
    region = region or default_region()
    key = _cache_key(service, region or "")
    with _lock:
        existing = _clients.get(key)
        if existing is not None:
            return existing
        global _session
        if _session is None or key[3] != getattr(_session, "_capt_creds", None):
            _session = boto3.session.Session()
            _session._capt_creds = key[3]  # type: ignore[attr-defined]
        c = _session.client(service, region_name=region, config=RETRY_CONFIG)
        c.meta.events.register("before-send", _count_request)
        c.meta.events.register("before-parameter-build", _note_operation)
        for event, handler in _hooks:
            c.meta.events.register(event, handler)
        _clients[key] = c
        return c


def reset_clients() -> None:
    """Forget cached clients (new credentials, endpoints or hooks take effect on next use)."""
    with _lock:
        _clients.clear()


@contextmanager
def hooked(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Register a botocore event handler on every client used inside the block.

    The instrumentation point for fault injection in tests (e.g. an `after-call` handler that
    raises as if the connection dropped after AWS did the work).
    """
    with _lock:
        _hooks.append((event, handler))
        for c in _clients.values():
            c.meta.events.register(event, handler)
    try:
        yield
    finally:
        with _lock:
            _hooks.remove((event, handler))
            for c in _clients.values():
                c.meta.events.unregister(event, handler)


@contextmanager
def counting_calls() -> Iterator[dict[str, int]]:
    """Tally the AWS requests this thread sends inside the block, per `service:Operation`."""
    previous = getattr(_local, "tally", None)
    tally: dict[str, int] = {}
    _local.tally = tally
    try:
        yield tally
    finally:
        _local.tally = previous


R = TypeVar("R")


def _attempt() -> int:
    """This activity's attempt number (1 outside an activity, e.g. in a unit test)."""
    try:
        return activity.info().attempt
    except RuntimeError:
        return 1


def aws_activity(fn: Callable[[Any], R]) -> Callable[[Any], R]:
    """Make `fn` a (sync) Temporal activity that counts its AWS calls and maps AWS errors.

    The result model must have an `aws_calls` field (see `models.AwsResult`); it is filled
    with this attempt's per-operation tally. Exceptions become ApplicationErrors through
    `errors.to_application_error` (non-retryable AWS codes fail fast with AWS's message).
    """

    @functools.wraps(fn)
    def run(arg: Any) -> R:
        with counting_calls() as tally:
            try:
                result = fn(arg)
            except Exception as exc:
                if isinstance(exc, ParamValidationError):
                    exc.operation_name = getattr(_local, "operation", "")  # type: ignore[attr-defined]
                raise to_application_error(exc, _attempt()) from exc
        return result.model_copy(update={"aws_calls": dict(tally)})  # type: ignore[attr-defined]

    return activity.defn(run)
