"""Builders shared by the time-skipping workflow tests and the benchmarks: a cluster context, a
machine template, a worker for one test."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from capt.activities.aws.secrets import ClusterPKIRefs
from capt.spec.models import KubeadmConfigSpec, MachineTemplate
from capt.workflows.machine.models import ClusterContext, LoadBalancerRef

AZS = ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")
T = TypeVar("T")


def cluster_context(name: str = "demo", azs: tuple[str, ...] = AZS) -> ClusterContext:
    return ClusterContext(
        name=name,
        namespace="default",
        region="ap-northeast-2",
        endpoint_host=f"{name}-apiserver.elb.example",
        pki=ClusterPKIRefs(
            ca_arn="arn:fake:ca",
            etcd_ca_arn="arn:fake:etcd-ca",
            front_proxy_ca_arn="arn:fake:fp",
            sa_arn="arn:fake:sa",
            admin_arn="arn:fake:admin",
            ca_cert_hash="sha256:" + "0" * 64,
        ),
        pod_cidrs=("192.168.0.0/16",),
        service_cidrs=("10.96.0.0/12",),
        private_subnets=tuple((az, f"subnet-{i}") for i, az in enumerate(azs)),
        security_groups=(("controlplane", "sg-cp"), ("node", "sg-node")),
        load_balancer=LoadBalancerRef(
            type="classic", name=f"{name}-apiserver", dns_name=f"{name}-apiserver.elb.example"
        ),
    )


def machine_template(name: str = "tpl", instance_type: str = "t3.large") -> MachineTemplate:
    return MachineTemplate(name=name, instance_type=instance_type, iam_instance_profile="nodes")


def kubeadm() -> KubeadmConfigSpec:
    return KubeadmConfigSpec()


@contextlib.asynccontextmanager
async def running_worker(
    env: WorkflowEnvironment, task_queue: str, workflows: list, activities: list, **worker_options
):
    """A worker for one test; sync activities run on a thread pool.

    Pass `max_cached_workflows=0` to make every workflow task replay its whole history (and
    to avoid sticky queues when a test stops one worker and starts another)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=workflows,
            activities=activities,
            activity_executor=pool,
            **worker_options,
        ):
            yield


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
