"""Deletion leaves nothing behind, including what Kubernetes made in AWS (issue 15), on the
local stack driven through the CLI.

A 1 + 1 cluster whose ClusterResourceSet creates 2 LoadBalancer Services and 3 PVCs: the
simulator's cloud-controller-manager makes 2 classic ELBs with their `k8s-elb-*` security groups
(and a rule on the nodes' group), its EBS CSI driver 3 volumes. `capt delete cluster --wait`
finishes, and the account audit equals the inventory taken before the create: no resource of
any kind is left (moto's own leftovers that real AWS removes are discounted by the audit).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import boto3
import pytest

from capt.activities.aws import audit, audit_compare
from capt.dev.stack import procs
from tests.e2e.test_cluster_e2e import BIN, capt
from tests.e2e.test_cluster_e2e import stack as stack  # noqa: F401 - the module-scoped local stack
from tests.e2e.test_devstack import dev
from tests.support.paths import QUICKSTART

pytestmark = pytest.mark.e2e
NAME = "lbpvc"

WORKLOAD = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: ebs
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: ebs.csi.aws.com
volumeBindingMode: Immediate
reclaimPolicy: Delete
"""
for i in (1, 2):
    WORKLOAD += f"""---
apiVersion: v1
kind: Service
metadata:
  name: web-{i}
  namespace: default
spec:
  type: LoadBalancer
  selector:
    app: web-{i}
  ports:
  - port: 80
    targetPort: 8080
"""
for i in (1, 2, 3):
    WORKLOAD += f"""---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data-{i}
  namespace: default
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ebs
  resources:
    requests:
      storage: 1Gi
"""


def manifest(tmp_path) -> str:
    text = QUICKSTART.read_text().replace("capi-quickstart", NAME).replace("replicas: 3", "replicas: 1")
    text = text.replace(
        f"kind: Cluster\nmetadata:\n  name: {NAME}\n  namespace: {NAME}\n",
        f"kind: Cluster\nmetadata:\n  name: {NAME}\n  namespace: {NAME}\n  labels:\n    workloads: lb-pvc\n",
        1,
    )
    indented = "\n".join("    " + line for line in WORKLOAD.splitlines())
    text += f"""---
apiVersion: addons.cluster.x-k8s.io/v1beta1
kind: ClusterResourceSet
metadata:
  name: lb-pvc
  namespace: {NAME}
spec:
  clusterSelector:
    matchLabels:
      workloads: lb-pvc
  resources:
  - kind: ConfigMap
    name: lb-pvc
  strategy: ApplyOnce
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: lb-pvc
  namespace: {NAME}
data:
  workload.yaml: |
{indented}
"""
    path = tmp_path / "lb-pvc.yaml"
    path.write_text(text)
    return str(path)


def kubernetes_made(inv: audit.Inventory) -> tuple[list[str], list[str], list[str]]:
    elbs = [r.id for r in inv.of("load-balancer") if "kubernetes.io/service-name" in r.tag_map]
    groups = [r.id for r in inv.of("security-group") if r.native_name.startswith("k8s-elb-")]
    volumes = [r.id for r in inv.of("volume") if "CSIVolumeName" in r.tag_map]
    return elbs, groups, volumes


def test_delete_with_load_balancer_services_and_volumes_leaves_nothing(stack, tmp_path, monkeypatch):  # noqa: F811
    env, _ = stack
    for key, value in env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)  # the audit's boto3 clients go to the stack's moto
    region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    factory = lambda service, r: boto3.client(service, region_name=r or region)  # noqa: E731
    baseline = audit.take_inventory(region, client_factory=factory)

    applied = capt(env, "apply", "-f", manifest(tmp_path), "--wait", "--timeout", "15m")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    deadline = time.monotonic() + 180
    while True:
        made = kubernetes_made(audit.take_inventory(region, client_factory=factory))
        if [len(m) for m in made] == [2, 2, 3] or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert [len(m) for m in made] == [2, 2, 3], made  # 2 ELBs, their 2 groups, 3 volumes

    t0 = time.monotonic()
    deleted = capt(env, "delete", "cluster", NAME, "-n", NAME, "--wait", "--timeout", "15m")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    print(f"delete --wait: {time.monotonic() - t0:.0f}s")

    after = audit.take_inventory(region, client_factory=factory)
    report = audit_compare.compare(baseline, after, desired=())
    assert report.clean, report.summary()
    assert after.keys() - baseline.keys() == set(), sorted(after.keys() - baseline.keys())


def temporal(env, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "temporal"), *args, "--address", env["TEMPORAL_ADDRESS"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def teardown_running(env, name: str) -> bool:
    done = subprocess.run(
        [str(BIN / "temporal"), "workflow", "describe", "--workflow-id", f"cluster/{name}/{name}"]
        + ["--address", env["TEMPORAL_ADDRESS"], "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return False
    info = json.loads(done.stdout).get("workflowExecutionInfo", {})
    return info.get("type", {}).get("name") == "ClusterTeardownWorkflow" and info.get("status") in (
        "WORKFLOW_EXECUTION_STATUS_RUNNING",
        "Running",
        1,
    )


def wait_until(check, what: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not {what} within {within}s"
        time.sleep(1)


def test_an_interrupted_delete_is_started_again_and_finishes(stack, tmp_path, monkeypatch):  # noqa: F811
    """The delete workflow terminated mid-way, then the cluster's own workflow terminated while
    the second delete runs, then the worker killed (-9) while the third runs: each time `capt
    delete` starts it again (or attaches to it) and it finishes, 0 leftovers."""
    env, state_dir = stack
    for key, value in env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    factory = lambda service, r: boto3.client(service, region_name=r or region)  # noqa: E731
    name = "again"
    baseline = audit.take_inventory(region, client_factory=factory)
    text = QUICKSTART.read_text().replace("capi-quickstart", name).replace("replicas: 3", "replicas: 1")
    (tmp_path / "again.yaml").write_text(text)
    applied = capt(env, "apply", "-f", str(tmp_path / "again.yaml"), "--wait", "--timeout", "15m")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def instances_left() -> int:
        inv = audit.take_inventory(region, client_factory=factory)
        return len([r for r in inv.of("instance") if r.cluster == name])

    # 1. The teardown (the cluster workflow's child) is terminated while machines are going.
    assert capt(env, "delete", "cluster", name, "-n", name).returncode == 0
    wait_until(lambda: instances_left() < 2, "deleting machines")
    temporal(env, "workflow", "terminate", "--workflow-id", f"teardown/{name}/{name}", "--reason", "chaos")
    # 2. `capt delete` again: the cluster workflow runs the teardown again; then the cluster
    # workflow itself is terminated mid-way, and `capt delete` starts a standalone teardown.
    assert capt(env, "delete", "cluster", name, "-n", name).returncode == 0
    time.sleep(2)
    temporal(env, "workflow", "terminate", "--workflow-id", f"cluster/{name}/{name}", "--reason", "chaos")
    third = capt(env, "delete", "cluster", name, "-n", name, "--region", region)
    assert third.returncode == 0, third.stdout + third.stderr
    # 3. kill -9 of the worker while the standalone teardown runs; a new worker (`capt dev up`
    # starts what is not running) picks it up, and `capt delete` attaches to the running one.
    wait_until(lambda: teardown_running(env, name), "the teardown running", within=60)
    worker = procs.read_pid_file(state_dir / "worker.pid")
    assert worker is not None and procs.is_ours(worker)
    os.kill(worker.pid, signal.SIGKILL)
    assert procs.wait_gone(worker, 10)
    restarted = dev(state_dir, "up")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    final = capt(env, "delete", "cluster", name, "-n", name, "--region", region, "--wait", "--timeout", "15m")
    assert final.returncode == 0, final.stdout + final.stderr

    after = audit.take_inventory(region, client_factory=factory)
    report = audit_compare.compare(baseline, after, desired=())
    assert report.clean, report.summary()
    assert after.keys() - baseline.keys() == set(), sorted(after.keys() - baseline.keys())


def test_a_deployment_whose_image_does_not_exist_fails_its_machines_and_deletes_clean(
    stack,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """RunInstances of an AMI that does not exist is a permanent error: the deployment's machine
    is Failed with AWS's message after one attempt (not retried for ever), the control plane is
    unaffected, and the delete finishes with nothing left."""
    env, _ = stack
    for key, value in env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    factory = lambda service, r: boto3.client(service, region_name=r or region)  # noqa: E731
    name = "badami"
    baseline = audit.take_inventory(region, client_factory=factory)
    text = QUICKSTART.read_text().replace("capi-quickstart", name).replace("replicas: 3", "replicas: 1")
    md_template = f"  name: {name}-md-0\n  namespace: {name}\nspec:\n  template:\n    spec:\n"
    assert md_template in text
    text = text.replace(md_template, md_template + "      ami:\n        id: ami-00000000000000000\n", 1)
    (tmp_path / "badami.yaml").write_text(text)
    applied = capt(env, "apply", "-f", str(tmp_path / "badami.yaml"))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def failed_machine() -> str | None:
        done = capt(env, "describe", "cluster", name, "-n", name, "-o", "json")
        if done.returncode != 0:
            return None
        return done.stdout if "InvalidAMIID" in done.stdout else None

    wait_until(lambda: failed_machine() is not None, "a Failed machine naming InvalidAMIID", within=300)
    shown = json.loads(failed_machine() or "{}")
    [failed] = [m for m in shown["machines"] if m["phase"] == "Failed"]
    assert failed["deployment"] == f"{name}-md-0" and "InvalidAMIID.NotFound" in failed["message"], failed
    assert "ami-00000000000000000" in failed["message"]  # AWS's own message
    delete = capt(env, "delete", "cluster", name, "-n", name, "--wait", "--timeout", "15m")
    assert delete.returncode == 0, delete.stdout + delete.stderr
    after = audit.take_inventory(region, client_factory=factory)
    report = audit_compare.compare(baseline, after, desired=())
    assert report.clean, report.summary()
    assert after.keys() - baseline.keys() == set(), sorted(after.keys() - baseline.keys())
