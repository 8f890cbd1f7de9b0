"""A standalone ClusterTeardownWorkflow (its ClusterWorkflow failed or was terminated: nobody hands
it the workload access) finds the API server and the PKI with the real `discover_workload_access`
and runs stage 1 through the workload API, on moto with AWS's dependency errors
(tests/support/strict_aws.py).

The workload API itself is a fake pair (`delete_cloud_backed_objects`/`list_cloud_backed_objects`)
that records the access it was given: the cluster's own API load balancer and PKI, never those of
`td-2`, whose id starts like ours.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws
from temporalio import activity

from capt.activities.aws import secrets as sm
from capt.activities.workload.activities import WorkloadAccess
from capt.activities.workload.discover import discover_workload_access
from capt.activities.workload.teardown import CloudBackedObjects as WorkloadCloudObjects
from capt.activities.workload.teardown import (
    CloudBackedObjectsRequest,
    CloudBackedService,
    DeleteCloudBackedObjectsRequest,
)
from capt.contracts import names
from capt.dev.testkit.reference import REGION
from capt.workflows.cluster.models import ClusterStatus
from capt.workflows.teardown.models import DELETE_CLOUD_BACKED_OBJECTS, LIST_CLOUD_BACKED_OBJECTS
from tests.support.context import running_worker
from tests.support.strict_aws import StrictAws, strict_aws
from tests.workflows.test_teardown import (
    NS,
    OTHER,
    create_network,
    csi_volume,
    describe,
    elb,
    region_inventory,
    seed_ccm_service,
    teardown,
    workers,
)


@pytest.fixture
def strict() -> Iterator[StrictAws]:
    with mock_aws(), strict_aws(REGION) as hook:
        yield hook


class RecordingWorkload:
    """The workload API's teardown activities over one LoadBalancer Service and one volume: the
    delete pass names them, the first list finds them gone. Records the access each call got."""

    def __init__(self) -> None:
        self.lb_name, self.volume_id = "", ""
        self.calls: list[tuple[str, WorkloadAccess]] = []

    def activities(self) -> list:
        fake = self

        @activity.defn(name=DELETE_CLOUD_BACKED_OBJECTS)
        def delete(req: DeleteCloudBackedObjectsRequest) -> WorkloadCloudObjects:
            fake.calls.append(("delete", req.access))
            service = CloudBackedService(
                namespace="default",
                name="web",
                uid="uid-web",
                type="LoadBalancer",
                load_balancer_name=fake.lb_name,
                deleting=True,
            )
            return WorkloadCloudObjects(
                services=(service,),
                load_balancer_names=(fake.lb_name,),
                volume_ids=(fake.volume_id,),
                pending=2,
            )

        @activity.defn(name=LIST_CLOUD_BACKED_OBJECTS)
        def list_(req: CloudBackedObjectsRequest) -> WorkloadCloudObjects:
            fake.calls.append(("list", req.access))
            return WorkloadCloudObjects(done=True)

        return [delete, list_]


def cluster_pki(name: str, endpoint_host: str | None = None) -> sm.ClusterPKIRefs:
    return sm.ensure_cluster_pki(
        sm.ClusterPKIRequest(
            cluster_name=name, namespace=NS, region=REGION, cluster_id=name, endpoint_host=endpoint_host
        )
    )


def api_dns_name(name: str) -> str:
    lb = names.load_balancer(name)
    return elb().describe_load_balancers(LoadBalancerNames=[lb])["LoadBalancerDescriptions"][0]["DNSName"]


async def test_standalone_teardown_discovers_the_workload_api_and_runs_stage_1(
    time_skipping_env, task_queue, strict
):
    env, name = time_skipping_env, "td"
    workflows, activities = workers()
    workload = RecordingWorkload()
    async with running_worker(
        env, task_queue, workflows, [*activities, discover_workload_access, *workload.activities()]
    ):
        # Another cluster whose id starts like ours, with its own API load balancer and PKI.
        await create_network(env, task_queue, OTHER)
        cluster_pki(OTHER, api_dns_name(OTHER))
        baseline = region_inventory()

        await create_network(env, task_queue, name)
        host = api_dns_name(name)
        refs = cluster_pki(name, host)
        workload.lb_name, _ = seed_ccm_service(name, [])
        workload.volume_id = csi_volume(name, "pvc-data")

        # No `workload`: as `capt delete` starts it for a cluster whose workflow is gone.
        final: ClusterStatus = await (await teardown(env, task_queue, name, cid=name)).result()

    assert final.phase == "Deleted" and final.blocked == []
    assert [call for call, _ in workload.calls] == ["delete", "list"]
    access = workload.calls[0][1]
    assert (access.region, access.endpoint_host, access.endpoint_port) == (REGION, host, 6443)
    assert (access.pki.ca_arn, access.pki.admin_arn, access.pki.ca_cert_hash) == (
        refs.ca_arn,
        refs.admin_arn,
        refs.ca_cert_hash,
    )
    assert not [e for e in final.events if "workload API not found" in e]
    assert any("workload objects deleted (1 load balancer(s), 1 volume(s) known)" in e for e in final.events)
    # Everything of ours is gone, nothing of td-2's went.
    assert describe(region_inventory() - baseline) == []
    assert baseline <= region_inventory()


async def test_without_the_pki_stage_1_is_skipped_and_says_what_is_missing(
    time_skipping_env, task_queue, strict
):
    env, name = time_skipping_env, "td"
    workflows, activities = workers()
    workload = RecordingWorkload()
    async with running_worker(
        env, task_queue, workflows, [*activities, discover_workload_access, *workload.activities()]
    ):
        await create_network(env, task_queue, name)  # the API load balancer, but no secrets yet
        final: ClusterStatus = await (await teardown(env, task_queue, name, cid=name)).result()

    assert final.phase == "Deleted" and workload.calls == []
    missing = "no PKI secret(s) ca, etcd-ca, front-proxy-ca, sa, admin owned by td"
    assert any(f"workload API not found ({missing})" in e for e in final.events)
    assert describe(region_inventory()) == []
