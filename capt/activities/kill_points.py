"""Worker kill -9 at precise points, for chaos runs: an activity interceptor.

Switched on only by an environment variable the production path never sets; capt/worker.py installs
the interceptor at start (and logs loudly) when it is set:

    CAPT_CHAOS_KILL="<activity_name>:<before|after>:<nth>[,<activity_name>:<before|after>:<nth>...]"

The worker process SIGKILLs itself
- `before`: right before its nth execution (attempt) of that activity starts: the task was
  handed to this worker, nothing of it ran;
- `after`: right after its nth execution of that activity returned (or raised): the side effect
  is done, its result is never reported -- a lost activity result.

Counts are per worker process, from its start. Temporal retries the activity once its
start-to-close timeout expires (a chaos runner may fail the dead worker's attempts sooner, by
activity id) on whichever worker polls next.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger("capt.chaos")

ENV_VAR = "CAPT_CHAOS_KILL"


class KillSpecError(ValueError):
    pass


@dataclass(frozen=True)
class KillPoint:
    activity: str
    when: Literal["before", "after"]
    nth: int

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        parts = text.strip().split(":")
        if len(parts) != 3 or parts[1] not in ("before", "after"):
            raise KillSpecError(f"{ENV_VAR}: {text!r} is not <activity>:<before|after>:<nth>")
        try:
            nth = int(parts[2])
        except ValueError:
            raise KillSpecError(f"{ENV_VAR}: {text!r}: nth must be an integer") from None
        if nth < 1 or not parts[0]:
            raise KillSpecError(f"{ENV_VAR}: {text!r}: needs an activity name and nth >= 1")
        return cls(parts[0], parts[1], nth)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.activity}:{self.when}:{self.nth}"


def parse_points(text: str) -> tuple[KillPoint, ...]:
    return tuple(KillPoint.parse(p) for p in text.split(",") if p.strip())


def _die(point: KillPoint) -> None:
    log.warning("capt-chaos: kill -9 of worker pid %d at %s", os.getpid(), point)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillInterceptor(Interceptor):
    """Counts executions per activity type; kills this process at the configured points."""

    def __init__(self, points: tuple[KillPoint, ...], die=_die) -> None:
        self.points = points
        self.started: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._die = die

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _KillInbound(next, self)

    def _point(self, name: str, when: str, nth: int) -> KillPoint | None:
        return next((p for p in self.points if p.activity == name and p.when == when and p.nth == nth), None)


class _KillInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: KillInterceptor) -> None:
        super().__init__(next)
        self._root = root

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        with self._root._lock:
            self._root.started[name] += 1
            nth = self._root.started[name]
        point = self._root._point(name, "before", nth)
        if point is not None:
            self._root._die(point)
        try:
            return await self.next.execute_activity(input)
        finally:
            point = self._root._point(name, "after", nth)
            if point is not None:
                self._root._die(point)


def interceptor_from_env(environ: dict[str, str] | None = None) -> KillInterceptor | None:
    """The kill interceptor CAPT_CHAOS_KILL asks for; None when it is unset (production)."""
    text = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip()
    if not text:
        return None
    points = parse_points(text)
    log.warning(
        "!!! CHAOS KILL POINTS ARE ON (%s=%s): this worker will kill -9 itself !!!",
        ENV_VAR,
        ",".join(map(str, points)),
    )
    return KillInterceptor(points)
