"""What the simulated API (simulator.kubeapi) and SSM ask of the world: the cluster behind a
server name, etcd health, API faults, pods, Secrets, evictions, Node deletion, SSM commands
(a mixin of `World`)."""

from __future__ import annotations

import logging
import uuid

from capt.dev.simulator.etcd import Member, ScriptResult, run_script
from capt.dev.simulator.world.state import Cluster, Machine, Node, Pod, rfc3339

log = logging.getLogger("capt.simulator")


class ApiMixin:
    """The API and SSM helpers of `World`."""

    # -- API helpers used by simulator.kubeapi ---------------------------------------------------

    def _node_of(self, m: Machine) -> Node | None:
        cluster = self.clusters.get(m.cluster_key or "")
        return cluster.nodes.get(m.node_name or "") if cluster else None

    def _api_up(self, cluster: Cluster) -> bool:
        return any(
            (m := self.machines.get(i)) is not None and m.alive for i in cluster.control_plane_instances
        )

    def api_cluster(self, server_name: str | None) -> Cluster | None:
        """The cluster whose API answers for this TLS server name (None: nothing listens there)."""
        with self.lock:
            cluster = self.clusters.get((server_name or "").lower())
            return cluster if cluster is not None and self._api_up(cluster) else None

    def member_healthy(self, cluster: Cluster, member: Member) -> bool:
        m = self.machines.get(cluster.member_instances.get(member.id, ""))
        if m is None or not m.alive:
            return False
        return not (m.names() | {member.name}) & self.faults.etcd_unhealthy

    def etcd_quorum(self, cluster: Cluster) -> bool:
        return cluster.etcd.has_quorum(lambda member: self.member_healthy(cluster, member))

    def api_fault(self, cluster: Cluster) -> bool:
        """True if this request gets a simulated 5xx (consumes one from a counted fault)."""
        for target in (cluster.name, cluster.tag_cluster, cluster.key):
            remaining = self.faults.api_5xx.get(target)
            if remaining is None:
                continue
            if remaining > 0:
                if remaining == 1:
                    del self.faults.api_5xx[target]
                else:
                    self.faults.api_5xx[target] = remaining - 1
            return True
        return False

    def controller_down(self, cluster: Cluster, kind: str, cloud_id: str | None = None) -> bool:
        """Is the cluster's `ccm` or `csi` controller stopped by a knob (target: the cluster's
        name, its instances' cluster tag, its endpoint host or its cloud cluster id)?"""
        bucket = self.faults.ccm_down if kind == "ccm" else self.faults.csi_down
        return bool({cluster.name, cluster.tag_cluster, cluster.key, cloud_id or cluster.name} & bucket)

    def add_pod(self, cluster: Cluster, pod: Pod) -> None:
        """A pod created through the API (the scheduler places it at the next tick)."""
        with self.lock:
            self._add_pod(cluster, pod)

    def _store_secret(self, cluster: Cluster, secret: dict) -> dict:
        meta = secret.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(self.now()))
        meta["resourceVersion"] = str(cluster.next_rv())
        cluster.secrets[(meta["namespace"], meta["name"])] = secret
        return secret

    def store_secret(self, cluster: Cluster, secret: dict) -> dict:
        with self.lock:
            return self._store_secret(cluster, secret)

    def evict(self, cluster: Cluster, pod: Pod) -> None:
        with self.lock:
            if pod.deletion is None:
                pod.deletion = self.now()
                pod.delete_due = self.clock() + self.settings.pod_grace
                pod.resource_version = cluster.next_rv()
                self._replace_pod(cluster, pod)

    def delete_node(self, cluster: Cluster, name: str) -> bool:
        with self.lock:
            return self._delete_node(cluster, name, "deleted through the API")

    # -- SSM ---------------------------------------------------------------------------------------

    def _ssm_managed(self, instance_id: str) -> bool:
        m = self.machines.get(instance_id)
        return m is not None and m.alive and m.booted

    def _run_ssm(self, instance_id: str, commands: list[str]) -> ScriptResult:
        m = self.machines.get(instance_id)
        if m is None or not m.alive:
            return ScriptResult(1, "", "simulator: the instance is no longer running\n")
        cluster = self.clusters.get(m.cluster_key or "")
        member = cluster.etcd.by_name(m.node_name or "") if cluster and m.control_plane else None
        result = run_script(
            commands,
            etcd=cluster.etcd if cluster else None,
            local_member=member,
            healthy=(lambda mem: self.member_healthy(cluster, mem)) if cluster else (lambda _m: False),
        )
        for line in result.stdout.splitlines():
            if line.startswith("capt-etcd: removed"):
                log.info(
                    "cluster %s: etcd %s (via %s)",
                    cluster.name if cluster else "-",
                    line[len("capt-etcd: ") :],
                    m.node_name,
                )
        if result.exit_code != 0:
            log.info(
                "ssm on %s exited %d: %s",
                instance_id,
                result.exit_code,
                result.stderr.strip().splitlines()[-1:] or "",
            )
        return result
