"""Benchmark: one big cluster (3 control-plane machines + N workers) created, then rolled twice.

    python -m capt.dev.bench big_cluster [--workers N[,N...]] [--full] [--results DIR]

On Temporal's time-skipping test server with the fake cloud (capt/dev/testkit/fake_cloud.py) under the
latency model (capt/dev/bench/latencies.toml: boot = instance_pending, kubeadm init / join, terminate =
instance_terminate), all in workflow time:

- a ControlPlaneWorkflow of 3 machines and a MachineDeploymentWorkflow of N workers over real
  MachineWorkflows, both owned by a stand-in for the ClusterWorkflow (`OwnerSink` below): it
  receives their `control_plane_changed` / `deployment_changed` status signals exactly as the
  ClusterWorkflow does (so their cost is measured), records each with its workflow time, and
  relays "control plane initialized" to the deployment as the ClusterWorkflow does. The
  ClusterWorkflow itself (network on moto, PKI, health check) is left out: the create of its
  network is benchmark 1's subject, and this one is about the machines;
- the deployment is created (workers start once the first control-plane node is Ready), rolled to
  a new version with maxSurge 1 / maxUnavailable 0, then to another with maxSurge 10 %;
- each phase's time is compared with its bound: the create with CP1 (boot + init) followed by the
  two joining control-plane machines (workers join in parallel meanwhile), a rollout with
  `model.rollout_bound` = ceil(N / surge) × (instance_pending + kubeadm_join);
- every workflow's history is read afterwards (every run of a continue-as-new chain): events and
  bytes per workflow type (largest run and total), runs, and workflow tasks completed.

Defaults are small (N = 20: well under a minute); `--full` runs N = 50 and N = 500 (the issue's
"3 + 500", the size cluster-api's scale tests aim at with one cluster: kubernetes-sigs/cluster-api
#8814, #13305), so the largest histories of N = 50 and N = 500 can be compared: continue-as-new
must keep the owners' runs bounded whatever N.
"""

from capt.dev.bench.big_cluster.cli import main
from capt.dev.bench.big_cluster.report import plots, section

__all__ = ["main", "plots", "section"]
