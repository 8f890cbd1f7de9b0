"""Every committed workflow history replays on this checkout's workflow code (docs/versioning.md).

The histories under tests/histories/<WorkflowType>/<path>.json were recorded from real runs on the
local stack (`make histories`, capt/dev/testkit/histories/). Long-running workflows (ClusterWorkflow,
ControlPlaneWorkflow, MachineDeploymentWorkflow, HealthCheckWorkflow, MachineWorkflow) move to new
code at their next workflow task, so a change that makes one of these histories fail to replay
would break running clusters: guard it with `workflow.patched` (or, for a PINNED workflow, let it
be a new build), never by re-recording the history.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.common import VersioningBehavior
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    StartChildWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from capt import worker

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
FILES = sorted(p for p in HISTORIES.glob("*/*.json") if p.parent.name != "manifests")


def _workflows() -> list[type]:
    workflows, _ = worker.registered()
    return workflows


def _load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId", path.stem), data)


def _workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def _event(history: WorkflowHistory, event_id: int) -> str:
    """`event 536 SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED (delete_all -> md/hist/hist/hist-md-0)`."""
    for e in history.events:
        if e.event_id != event_id:
            continue
        kind = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        detail = ""
        if e.HasField("activity_task_scheduled_event_attributes"):
            detail = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.HasField("signal_external_workflow_execution_initiated_event_attributes"):
            a = e.signal_external_workflow_execution_initiated_event_attributes
            detail = f"{a.signal_name} -> {a.workflow_execution.workflow_id}"
        elif e.HasField("start_child_workflow_execution_initiated_event_attributes"):
            a = e.start_child_workflow_execution_initiated_event_attributes
            detail = f"{a.workflow_type.name} {a.workflow_id}"
        elif e.HasField("timer_started_event_attributes"):
            detail = f"timer {e.timer_started_event_attributes.timer_id}"
        elif e.HasField("marker_recorded_event_attributes"):
            detail = e.marker_recorded_event_attributes.marker_name
        return f"event {event_id} {kind}" + (f" ({detail})" if detail else "")
    return f"event {event_id}"


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(HISTORIES).as_posix() for p in FILES])
async def test_history_replays(path: Path) -> None:
    history = _load(path)
    result = await Replayer(workflows=_workflows(), data_converter=pydantic_data_converter).replay_workflow(
        history, raise_on_replay_failure=False
    )
    if result.replay_failure is not None:
        failure = str(result.replay_failure)
        # Core names the event it could not match ("HistoryEvent(id: 42, ...)", "event_id: 42"); show
        # what that event is.
        ids = sorted(
            {
                int(n)
                for n in re.findall(r"(?:HistoryEvent\(id|event(?:[ _]id)?)[: ]+(\d+)", failure, flags=re.I)
            }
        )
        named = "; ".join(_event(history, i) for i in ids) or "no event id in the failure"
        pytest.fail(
            f"{path.relative_to(HISTORIES)} ({_workflow_type(history)} {history.workflow_id}, "
            f"{len(history.events)} events) does not replay on this code — {named}:\n"
            f"{type(result.replay_failure).__name__}: {failure}\n"
            "A change to workflow code must keep every committed history replaying: guard a new "
            "command order with workflow.patched() (docs/versioning.md).",
            pytrace=False,
        )


def test_histories_cover_every_registered_workflow() -> None:
    assert FILES, f"no histories under {HISTORIES}: run `make histories`"
    recorded = {_workflow_type(_load(p)) for p in FILES}
    registered = {w.__temporal_workflow_definition.name for w in _workflows()}  # type: ignore[attr-defined]
    assert registered <= recorded, f"no committed history for {sorted(registered - recorded)}"
    # Files sit under the directory of their workflow type.
    misplaced = [
        p.relative_to(HISTORIES).as_posix() for p in FILES if _workflow_type(_load(p)) != p.parent.name
    ]
    assert not misplaced, misplaced


def test_every_workflow_declares_its_versioning_behavior() -> None:
    """docs/versioning.md: the only PINNED workflow is InfrastructureWorkflow (minutes long, ends);
    every other one is a long-lived entity that moves to new builds (AUTO_UPGRADE)."""
    behaviors = {
        w.__temporal_workflow_definition.name: w.__temporal_workflow_definition.versioning_behavior  # type: ignore[attr-defined]
        for w in _workflows()
    }
    assert behaviors == {
        name: VersioningBehavior.PINNED
        if name == "InfrastructureWorkflow"
        else VersioningBehavior.AUTO_UPGRADE
        for name in behaviors
    }


def test_worker_versioning_options() -> None:
    """capt-worker is unversioned unless given a deployment name; then its version is that
    deployment's, with the given build id or the default one (docs/versioning.md)."""
    import click

    from capt.workflows.versioning import default_build_id

    assert worker.versioning_options(None) == {} and worker.versioning_options("") == {}
    with pytest.raises(click.UsageError, match="--deployment-name"):
        worker.versioning_options(None, "b1")
    config = worker.versioning_options("capt", "b1")["deployment_config"]
    assert config.use_worker_versioning and config.version.to_canonical_string() == "capt.b1"
    assert (
        config.default_versioning_behavior == VersioningBehavior.UNSPECIFIED
    )  # each workflow declares its own
    default = worker.versioning_options("capt")["deployment_config"].version.build_id
    assert default == default_build_id() and re.fullmatch(r".+-[0-9a-f]{12}", default)


def test_build_id_follows_the_workflow_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from capt.workflows.versioning import workflow_sources_digest

    package = tmp_path / "captwfprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flow.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = workflow_sources_digest(("captwfprobe",))
    assert workflow_sources_digest(("captwfprobe",)) == before
    (package / "flow.py").write_text("X = 2\n")
    assert workflow_sources_digest(("captwfprobe",)) != before


# --- namespaced-cluster-id: a history recorded before the patch keeps the name as the id ----------

_SENT: list[object] = []  # what the replayed ClusterWorkflow handed its children and activities


class _CaptureOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput):
        _SENT.extend(input.args)
        return super().start_activity(input)

    async def start_child_workflow(self, input: StartChildWorkflowInput):
        _SENT.extend(input.args)
        return await super().start_child_workflow(input)


class _CaptureInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_CaptureOutbound(outbound))


class _Capture(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput):
        return _CaptureInbound


@pytest.mark.parametrize(
    ("name", "cluster_id"),
    [
        ("create.pre-namespaced-cluster-id.json", "hist"),
        ("delete.pre-namespaced-cluster-id.json", "hist"),
        ("create.json", "hist.hist"),
        ("delete.json", "hist.hist"),
    ],
)
async def test_a_cluster_history_keeps_the_id_it_chose(name: str, cluster_id: str) -> None:
    """`hist` in namespace `hist`. Recorded before ids were namespaced: on replay, infrastructure,
    PKI, machines and the deletion are all told the id `hist`, never `hist.hist`. Recorded after:
    `hist.hist` throughout."""
    from capt.activities.aws.secrets import ClusterPKIRequest, DeleteClusterSecretsRequest
    from capt.workflows.controlplane.models import ControlPlaneInput
    from capt.workflows.infrastructure.models import InfraInput
    from capt.workflows.teardown.models import TeardownInput

    _SENT.clear()
    history = _load(HISTORIES / "ClusterWorkflow" / name)
    result = await Replayer(
        workflows=_workflows(), data_converter=pydantic_data_converter, interceptors=[_Capture()]
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
    ids = [
        (type(x).__name__, x.cluster_id)
        for x in _SENT
        if isinstance(x, InfraInput | ClusterPKIRequest | DeleteClusterSecretsRequest | TeardownInput)
    ]
    ids += [(type(x).__name__, x.cluster.cluster_id) for x in _SENT if isinstance(x, ControlPlaneInput)]
    kinds = {k for k, _ in ids}
    assert {"InfraInput", "ClusterPKIRequest", "ControlPlaneInput"} <= kinds
    if name.startswith("delete"):
        # The deletion: the teardown child (teardown-v2), or the secrets before it.
        assert kinds & {"DeleteClusterSecretsRequest", "TeardownInput"}
    assert {cid for _, cid in ids} == {cluster_id}
