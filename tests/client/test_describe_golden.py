"""Golden output of `capt describe cluster` (tree, JSON, YAML) and `capt get clusters -o wide`
for one fixed cluster status: a change to any column or key shows up here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import yaml

from capt.cli import read as cli_read
from capt.client.describe import as_json, table, tree
from capt.contracts.owners import ControlPlaneMachine, ControlPlaneStatus, DeploymentMachine, DeploymentStatus
from capt.workflows.cluster.models import ClusterStatus, InfrastructureSummary

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def status() -> ClusterStatus:
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
        machines=[
            ControlPlaneMachine(
                name="prod-control-plane-abcde",
                phase="Running",
                availability_zone="ap-northeast-2a",
                instance_id="i-0cp",
                node_name="ip-10-0-64-4",
                node_ready=True,
                version="v1.31.0",
                up_to_date=True,
                unhealthy=False,
                message="",
            )
        ],
    )
    md = DeploymentStatus(
        name="prod-md-0",
        cluster="prod",
        phase="Running",
        desired_replicas=1,
        replicas=1,
        ready_replicas=1,
        available_replicas=1,
        up_to_date_replicas=1,
        unavailable_replicas=0,
        revision="r1",
        version="v1.31.0",
        paused=False,
        cluster_paused=False,
        strategy="RollingUpdate",
        control_plane_initialized=True,
        control_plane_version="v1.31.0",
        conditions=[],
        revisions=[],
        machines=[
            DeploymentMachine(
                name="prod-md-0-r1-fghij",
                phase="Running",
                revision="r1",
                up_to_date=True,
                availability_zone="ap-northeast-2b",
                instance_id="i-0md",
                node_name="ip-10-0-128-5",
                node_ready=True,
                available=True,
                unhealthy=False,
                deleting=False,
                message="",
            )
        ],
        operation="",
        last_remediation="",
    )
    return ClusterStatus(
        name="prod",
        namespace="team-a",
        region="ap-northeast-2",
        cluster_id="team-a.prod",
        phase="Ready",
        message="every machine is up to date and Ready",
        phase_since=NOW - timedelta(hours=2),
        paused=False,
        version="v1.31.0",
        endpoint="prod-api.elb.example:6443",
        infrastructure=InfrastructureSummary(
            vpc_id="vpc-1", availability_zones=("ap-northeast-2a", "ap-northeast-2b")
        ),
        control_plane=cp,
        deployments=[md],
        ready_machines=2,
        desired_machines=2,
        events=[],
    )


def test_tree_is_golden():
    assert tree(status(), NOW).splitlines() == [
        "NAME                                                     READY  REASON  SINCE  MESSAGE",
        "Cluster/prod                                             True           2h     every machine is up to date and Ready",
        "├─ClusterInfrastructure - AWSCluster/prod                True                  id team-a.prod vpc-1 2 AZs",
        "├─ControlPlane - KubeadmControlPlane/prod-control-plane  True                  1/1 ready, 1 up to date, v1.31.0",
        "│ └─Machine/prod-control-plane-abcde                     True                  ap-northeast-2a i-0cp",
        "└─Workers",
        "  └─MachineDeployment/prod-md-0                          True                  1/1 ready, 1 available, 1 up to date, v1.31.0",
        "    └─Machine/prod-md-0-r1-fghij                         True                  ap-northeast-2b i-0md",
    ]


def test_json_and_yaml_carry_the_same_camel_case_document():
    doc = as_json(status())
    assert list(doc)[:10] == [
        "name",
        "namespace",
        "clusterId",
        "region",
        "phase",
        "message",
        "paused",
        "endpoint",
        "infrastructure",
        "controlPlane",
    ]
    assert [(m["name"], m["role"], m["deployment"]) for m in doc["machines"]] == [
        ("prod-control-plane-abcde", "control-plane", None),
        ("prod-md-0-r1-fghij", "worker", "prod-md-0"),
    ]
    assert (
        yaml.safe_load(cli_read._dump(doc, "yaml"))
        == json.loads(cli_read._dump(doc, "json"))
        == json.loads(json.dumps(doc))
    )


def test_get_clusters_wide_table():
    assert table([status()]).splitlines() == [
        "NAMESPACE  NAME  PHASE  VERSION  READY  ENDPOINT",
        "team-a     prod  Ready  v1.31.0  2/2    prod-api.elb.example:6443",
    ]
