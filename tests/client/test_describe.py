"""`capt describe cluster`: the cluster id (what its AWS resources are named after) is shown."""

from __future__ import annotations

from capt.client.describe import as_json, tree
from capt.workflows.cluster.models import ClusterStatus, InfrastructureSummary


def _status(**changes) -> ClusterStatus:
    fields = dict(
        name="prod",
        namespace="team-a",
        region="ap-northeast-2",
        phase="Provisioning",
        message="control plane",
        paused=False,
        version="v1.31.0",
        endpoint=None,
        infrastructure=InfrastructureSummary(vpc_id="vpc-1", availability_zones=("ap-northeast-2a",)),
        control_plane=None,
        deployments=[],
        ready_machines=0,
        desired_machines=1,
        events=[],
    )
    fields.update(changes)
    return ClusterStatus(**fields)


def test_describe_shows_the_cluster_id() -> None:
    status = _status(cluster_id="team-a.prod")
    assert as_json(status)["clusterId"] == "team-a.prod"
    [infra] = [line for line in tree(status).splitlines() if "AWSCluster/prod" in line]
    assert "id team-a.prod vpc-1" in infra


def test_a_status_from_before_cluster_ids_still_reads() -> None:
    """A status answered by a worker that predates cluster ids has no `cluster_id` field."""
    old = _status().model_dump(mode="json")
    del old["cluster_id"]
    status = ClusterStatus.model_validate(old)
    assert status.cluster_id is None and as_json(status)["clusterId"] == "prod"  # its id is its name
    assert "vpc-1" in tree(status) and " id " not in tree(status)


def test_get_machines_table_is_golden() -> None:
    from capt.client.describe import machines_table
    from capt.contracts.owners import ControlPlaneMachine, ControlPlaneStatus

    machine = ControlPlaneMachine(
        name="prod-control-plane-abcde",
        phase="Running",
        availability_zone="ap-northeast-2a",
        instance_id="i-0123",
        node_name="ip-10-0-64-4",
        node_ready=True,
        version="v1.31.0",
        up_to_date=True,
        unhealthy=False,
        message="",
    )
    cp = ControlPlaneStatus(
        name="prod-control-plane",
        desired_replicas=1,
        replicas=1,
        ready_replicas=1,
        up_to_date_replicas=1,
        version="v1.31.0",
        initialized=True,
        ready=True,
        operation="",
        last_refusal="",
        machines=[machine],
    )
    assert machines_table([_status(control_plane=cp)]).splitlines() == [
        "NAME                      CLUSTER      ROLE           PHASE    VERSION  NODE          AZ               INSTANCE",
        "prod-control-plane-abcde  team-a/prod  control-plane  Running  v1.31.0  ip-10-0-64-4  ap-northeast-2a  i-0123",
    ]


def test_get_clusters_rows_table_is_golden() -> None:
    from datetime import UTC, datetime, timedelta

    from capt.client.describe import rows_table

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    rows = [
        {
            "namespace": "team-a",
            "name": "prod",
            "phase": "Ready",
            "version": "v1.31.0",
            "readyMachines": 6,
            "started": now - timedelta(hours=3),
        },
        {
            "namespace": "team-b",
            "name": "dev",
            "phase": "Provisioning",
            "version": "",
            "readyMachines": None,
            "started": now - timedelta(seconds=40),
        },
    ]
    assert rows_table(rows, now).splitlines() == [
        "NAMESPACE  NAME  PHASE         VERSION  READY  AGE",
        "team-a     prod  Ready         v1.31.0  6      3h",
        "team-b     dev   Provisioning  -        -      40s",
    ]


def test_describe_fills_since_from_the_phase_change() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    status = _status(phase_since=now - timedelta(minutes=7))
    header, first = tree(status, now).splitlines()[:2]
    assert header.split()[:4] == ["NAME", "READY", "REASON", "SINCE"]
    assert first.split()[:4] == ["Cluster/prod", "False", "Provisioning", "7m"]
