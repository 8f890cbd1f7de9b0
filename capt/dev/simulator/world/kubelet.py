"""The passing of time in the world: join retries, Node readiness and deletion, pod termination
and scheduling, the token cleaner, kubelet re-registration (a mixin of `World`)."""

from __future__ import annotations

import logging

from capt.dev.simulator import kubeadm, storage
from capt.dev.simulator.world.state import NOT_READY_CNI, Cluster, Machine, Node, Pod, _suffix

log = logging.getLogger("capt.simulator")


class KubeletMixin:
    """`World.tick` and the Node and pod lifecycle it drives."""

    # -- the passing of time ----------------------------------------------------------------------

    def tick(self) -> None:
        """Everything time moves on: join retries, Ready transitions, Node deletion, pod
        termination and scheduling, the token cleaner, kubelet re-registration."""
        with self.lock:
            now = self.clock()
            for m in list(self.machines.values()):
                if m.phase == "joining" and m.task is not None and m.alive and now >= m.next_try:
                    self._kubeadm(m)
            for cluster in self.clusters.values():
                self._tick_nodes(cluster, now)
                self._tick_pods(cluster, now)
                storage.tick(cluster)
                self._clean_tokens(cluster)
            for m in self.machines.values():
                if (
                    m.phase == "joined"
                    and m.alive
                    and m.cluster_key in self.clusters
                    and m.node_name is not None
                    and m.node_name not in self.clusters[m.cluster_key].nodes
                    and now >= m.next_try
                ):
                    cluster = self.clusters[m.cluster_key]
                    log.info(
                        "node %s: its kubelet still runs on %s: registering again", m.node_name, m.instance_id
                    )
                    reg = kubeadm.NodeRegistration(name=m.node_name)
                    self._create_node(m, cluster, reg, self._kubelet_of(m, cluster))

    def _kubelet_of(self, m: Machine, cluster: Cluster) -> str:
        return kubeadm.version_from_image_name(m.image.name if m.image else None) or cluster.version

    def _tick_nodes(self, cluster: Cluster, now: float) -> None:
        for node in list(cluster.nodes.values()):
            m = self.machines.get(node.instance_id)
            names = {node.name, node.instance_id} | (m.names() if m else set())
            if m is None or not m.alive:
                gone_since = m.gone_since if m else None
                if gone_since is None or now - gone_since >= self.settings.node_gone_delay:
                    self._delete_node(cluster, node.name, "its instance is gone")
                continue
            if names & self.faults.not_ready:
                self._set_ready(
                    node, "False", "KubeletNotReady", "simulated fault: the kubelet reports NotReady"
                )
            elif names & self.faults.never_ready:
                self._set_ready(node, "False", "KubeletNotReady", NOT_READY_CNI)
            elif node.ready_due is not None and now >= node.ready_due:
                self._set_ready(node, "True", "KubeletReady", "kubelet is posting ready status")
            elif node.ready_due is None and node.ready_status != "True":
                # Back from a fault: Ready again after the kubelet's delay.
                node.ready_due = now + self.settings.ready_delay

    def _set_ready(self, node: Node, status: str, reason: str, message: str) -> None:
        if (node.ready_status, node.ready_reason) == (status, reason):
            return
        if status != node.ready_status:
            node.ready_since = self.now()
        node.ready_status, node.ready_reason, node.ready_message = status, reason, message
        if status == "True":
            node.ready_due = None
        log.info("node %s: Ready=%s (%s)", node.name, status, reason)

    def _delete_node(self, cluster: Cluster, name: str, why: str) -> bool:
        node = cluster.nodes.pop(name, None)
        if node is None:
            return False
        log.info("cluster %s: node %s deleted (%s)", cluster.name, name, why)
        for key, pod in list(cluster.pods.items()):
            if pod.node_name == name:
                del cluster.pods[key]
                self._replace_pod(cluster, pod)
        m = self.machines.get(node.instance_id)
        if m is not None:
            m.next_try = self.clock() + self.settings.reregister_delay
        return True

    def _tick_pods(self, cluster: Cluster, now: float) -> None:
        for key, pod in list(cluster.pods.items()):
            if pod.delete_due is not None and now >= pod.delete_due:
                del cluster.pods[key]
        for pod in cluster.pods.values():
            if pod.node_name is None and pod.deletion is None:
                target = self._schedule(cluster, pod)
                if target is not None:
                    pod.node_name = target
                    pod.resource_version = cluster.next_rv()

    def _schedule(self, cluster: Cluster, pod: Pod) -> str | None:
        # Volume binding: every claim must exist and not be deleting; a bound volume's zone limits
        # the nodes (an EBS volume attaches only in its availability zone).
        ok, zones = storage.schedulable_claims(cluster, pod.namespace, storage.claims_of(pod.volumes))
        if not ok:
            return None

        def fits(node: Node) -> bool:
            if node.ready_status != "True" or node.unschedulable:
                return False
            if zones and node.labels.get("topology.kubernetes.io/zone") not in zones:
                return False
            tolerated = {(t.get("key"), t.get("effect")) for t in pod.tolerations}
            return all(
                t.get("effect") not in ("NoSchedule", "NoExecute")
                or (t.get("key"), t.get("effect")) in tolerated
                for t in node.taints
            )

        load: dict[str, int] = {}
        for p in cluster.pods.values():
            if p.node_name:
                load[p.node_name] = load.get(p.node_name, 0) + 1
        candidates = sorted((load.get(n.name, 0), n.name) for n in cluster.nodes.values() if fits(n))
        return candidates[0][1] if candidates else None

    def _add_pod(self, cluster: Cluster, pod: Pod) -> None:
        pod.resource_version = cluster.next_rv()
        cluster.pods[(pod.namespace, pod.name)] = pod

    def _replace_pod(self, cluster: Cluster, gone: Pod) -> None:
        """A ReplicaSet replaces a pod that is being deleted (it stops counting it at once)."""
        if gone.owner_kind != "ReplicaSet" or gone.owner_name is None:
            return
        for i in range(1000):
            name = f"{gone.owner_name}-{_suffix(gone.name, str(i), 5)}"
            if (gone.namespace, name) not in cluster.pods:
                break
        self._add_pod(
            cluster,
            Pod(
                namespace=gone.namespace,
                name=name,
                node_name=None,
                created=self.now(),
                owner_kind="ReplicaSet",
                owner_name=gone.owner_name,
                tolerations=gone.tolerations,
                labels=dict(gone.labels),
                volumes=gone.volumes,
                containers=gone.containers,
            ),
        )

    def _clean_tokens(self, cluster: Cluster) -> None:
        now = self.now()
        for key, secret in list(cluster.secrets.items()):
            token = kubeadm.token_from_secret(secret) if key[0] == "kube-system" else None
            if token is not None and token.expiration is not None and token.expiration <= now:
                del cluster.secrets[key]
                log.info("cluster %s: token cleaner deleted expired %s", cluster.name, key[1])
