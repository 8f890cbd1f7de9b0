"""The shared query helper: a nondeterminism error is asked again only after the run's history
replays cleanly; a history that does not replay fails the test."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowQueryFailedError

from tests.support import context

NDE = "[TMPRL1100] Nondeterminism error: Activity type of scheduled event 'a' does not match 'b'"


class _Handle:
    """A workflow handle whose first `fail` queries fail with a nondeterminism error."""

    def __init__(self, fail: int) -> None:
        self.id = "wf"
        self._client = self
        self.fail = fail
        self.asked = 0

    def get_workflow_handle(self, _id: str) -> _Handle:
        return self

    async def query(self, *_args, **_kwargs) -> str:
        self.asked += 1
        if self.asked <= self.fail:
            raise WorkflowQueryFailedError(NDE)
        return "answer"


@pytest.fixture
def replays(monkeypatch) -> list[str]:
    checked: list[str] = []

    async def check(handle, err) -> None:
        checked.append(handle.id)
        if handle.id == "bad":
            raise AssertionError("does not replay") from err

    monkeypatch.setattr(context, "_history_replays_cleanly", check)
    return checked


async def test_a_history_that_replays_is_asked_again(replays) -> None:
    handle = _Handle(fail=1)
    assert await context.query(handle, "status") == "answer"
    assert (handle.asked, replays) == (2, ["wf"])


async def test_a_history_that_does_not_replay_fails(replays) -> None:
    handle = _Handle(fail=1)
    handle.id = "bad"
    with pytest.raises(AssertionError, match="does not replay"):
        await context.query(handle, "status")
    assert handle.asked == 1


async def test_other_query_failures_are_not_retried(replays) -> None:
    class Failing(_Handle):
        async def query(self, *_a, **_k):
            self.asked += 1
            raise WorkflowQueryFailedError("no such query: statuz")

    handle = Failing(fail=0)
    with pytest.raises(WorkflowQueryFailedError, match="statuz"):
        await context.query(handle, "status")
    assert (handle.asked, replays) == (1, [])
