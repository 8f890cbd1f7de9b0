"""AWS fault injection for chaos runs: lost responses, throttling and 5xx on boto3 calls.

Switched on only by an environment variable the production path never sets; capt/worker.py calls
`install_from_env()` at start and logs loudly when it is on:

    CAPT_AWS_FAULTS="lost=0.1,throttle=0.3,5xx=0.05,seed=7,ops=mutating"

Per AWS call whose operation matches `ops`, one seeded draw picks at most one fault:
- `throttle`: a `before-call` handler answers for AWS with `Throttling` (HTTP 400), or
  `RequestLimitExceeded` (HTTP 503) for EC2 -- the request is **not** applied;
- `5xx`: likewise with `InternalError` (500) or `ServiceUnavailable` (503) -- not applied;
- `lost`: the request **is** applied, then an `after-call` handler raises botocore's
  `ReadTimeoutError` or `ConnectionClosedError`, as if the connection dropped before the answer
  arrived. errors.py classifies both (BotoCoreError) as retryable, so Temporal retries the
  activity, which must then find what the lost call created or changed.

Short-circuited calls skip botocore's own retries (they never reach the retry handler), so every
fault reaches the activity and Temporal's retry: the harshest form of each fault.

`ops`: `mutating` (default; the prefixes in MUTATING_PREFIXES), `all`, or operation names
separated by `+` (e.g. `ops=RunInstances+CreateNatGateway`). Keys are fractions in [0, 1];
`lost + throttle + 5xx` must not exceed 1.

Reproducibility: each operation has its own RNG seeded with (seed, operation), drawn under a
lock in call order, so the n-th CreateVpc of a worker process always gets the same fault.
Calls of one operation made concurrently by several activities may take their draws in either
order; the sequence of faults per operation is the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from capt.activities.aws import session

log = logging.getLogger("capt.faults")

ENV_VAR = "CAPT_AWS_FAULTS"

MUTATING_PREFIXES = (
    "Create",
    "Delete",
    "Run",
    "Terminate",
    "Allocate",
    "Release",
    "Associate",
    "Disassociate",
    "Attach",
    "Detach",
    "Modify",
    "Put",
    "Register",
    "Deregister",
    "Authorize",
    "Revoke",
    "Replace",
    "Update",
    "Tag",
    "Apply",
    "Set",
)


def is_mutating(operation: str) -> bool:
    return operation.startswith(MUTATING_PREFIXES)


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class FaultSpec:
    lost: float = 0.0
    throttle: float = 0.0
    server_error: float = 0.0
    seed: int = 0
    ops: str = "mutating"

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """`lost=0.1,throttle=0.3,5xx=0.05,seed=7,ops=mutating` (any subset, any order)."""
        values: dict[str, Any] = {}
        names = {"lost": "lost", "throttle": "throttle", "5xx": "server_error", "seed": "seed", "ops": "ops"}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise FaultSpecError(f"{ENV_VAR}: {part!r} is not one of {', '.join(f'{k}=' for k in names)}")
            try:
                if key == "seed":
                    values["seed"] = int(value)
                elif key == "ops":
                    values["ops"] = value.strip() or "mutating"
                else:
                    values[names[key]] = float(value)
            except ValueError:
                raise FaultSpecError(f"{ENV_VAR}: {part!r} has a malformed value") from None
        spec = cls(**values)
        for name in ("lost", "throttle", "server_error"):
            if not 0.0 <= getattr(spec, name) <= 1.0:
                raise FaultSpecError(f"{ENV_VAR}: {name} must be within [0, 1]")
        if spec.lost + spec.throttle + spec.server_error > 1.0 + 1e-9:
            raise FaultSpecError(f"{ENV_VAR}: lost + throttle + 5xx must not exceed 1")
        return spec

    def applies_to(self, operation: str) -> bool:
        if self.ops == "all":
            return True
        if self.ops == "mutating":
            return is_mutating(operation)
        return operation in self.ops.split("+")

    def __str__(self) -> str:
        return (
            f"lost={self.lost:g},throttle={self.throttle:g},5xx={self.server_error:g},"
            f"seed={self.seed},ops={self.ops}"
        )


_LOST_MARK = "capt_fault_lost"
_THROTTLE = {"ec2": ("RequestLimitExceeded", 503)}
_SERVER_ERRORS = (("InternalError", 500), ("ServiceUnavailable", 503))


class FaultInjector:
    """The botocore handlers and their bookkeeping (`injected`: fault kind -> count)."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self.injected: Counter[str] = Counter()
        self._rngs: dict[str, random.Random] = {}
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()

    # -- decisions -------------------------------------------------------------------------
    def _draw(self, operation: str) -> tuple[str | None, float]:
        with self._lock:
            rng = self._rngs.get(operation)
            if rng is None:
                rng = self._rngs[operation] = random.Random(f"{self.spec.seed}/{operation}")
            x, y = rng.random(), rng.random()
        s = self.spec
        if x < s.lost:
            return "lost", y
        if x < s.lost + s.throttle:
            return "throttle", y
        if x < s.lost + s.throttle + s.server_error:
            return "5xx", y
        return None, y

    def _record(self, kind: str, service: str, operation: str) -> None:
        with self._lock:
            self.injected[kind] += 1
        # One line per fault, grep-able: "capt-fault: throttle ec2 CreateVpc".
        log.warning("capt-fault: %s %s %s", kind, service, operation)

    # -- handlers --------------------------------------------------------------------------
    def before_call(self, model: Any, context: Any = None, **_: Any) -> tuple[AWSResponse, dict] | None:
        operation = model.name
        if not self.spec.applies_to(operation):
            return None
        service = model.service_model.service_id.hyphenize()
        fault, y = self._draw(operation)
        if fault == "lost":
            # Applied by AWS first; the after-call handler of this same call (same request
            # context) drops the answer.
            if context is not None:
                context[_LOST_MARK] = y
            return None
        if fault is None:
            return None
        if fault == "throttle":
            code, status = _THROTTLE.get(service, ("Throttling", 400))
        else:
            code, status = _SERVER_ERRORS[int(y * len(_SERVER_ERRORS)) % len(_SERVER_ERRORS)]
        self._record(fault, service, operation)
        parsed = {
            "Error": {"Code": code, "Message": f"injected by {ENV_VAR}"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }
        return AWSResponse(f"https://{service}.capt-fault.invalid", status, {}, None), parsed

    def after_call(self, http_response: Any, model: Any, context: Any = None, **_: Any) -> None:
        y = context.pop(_LOST_MARK, None) if context is not None else None
        if y is None:
            return
        if http_response is None or http_response.status_code >= 300:
            return  # AWS refused it anyway: nothing was applied, nothing to lose
        service = model.service_model.service_id.hyphenize()
        self._record("lost", service, model.name)
        url = f"https://{service}.capt-fault.invalid/{model.name}"
        if y < 0.5:
            raise ReadTimeoutError(endpoint_url=url)
        raise ConnectionClosedError(endpoint_url=url)

    # -- lifecycle -------------------------------------------------------------------------
    def install(self) -> FaultInjector:
        self._stack.enter_context(session.hooked("before-call", self.before_call))
        self._stack.enter_context(session.hooked("after-call", self.after_call))
        return self

    def uninstall(self) -> None:
        self._stack.close()

    def __enter__(self) -> FaultInjector:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def install_from_env(environ: dict[str, str] | None = None) -> FaultInjector | None:
    """The injector described by CAPT_AWS_FAULTS, installed on every capt boto3 client; None
    when the variable is unset or empty (production)."""
    text = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
    if not text:
        return None
    spec = FaultSpec.parse(text)
    log.warning("!!! AWS FAULT INJECTION IS ON (%s=%s): AWS calls will fail on purpose !!!", ENV_VAR, spec)
    return FaultInjector(spec).install()
