"""An instance's boot: the boothook (the only I/O), cloud-init, kubeadm init and join, and the
cluster facts kubeadm's discovery reads (a mixin of `World`)."""

from __future__ import annotations

import logging

from capt.dev.simulator import cloudinit, kube_system, kubeadm
from capt.dev.simulator.world.state import (
    CONTROL_PLANE_LABEL,
    CONTROL_PLANE_TAINT,
    JOIN_RETRY_SECONDS,
    STATIC_PODS,
    BootIO,
    Cluster,
    ImageInfo,
    Machine,
    Node,
    Pod,
    _suffix,
    _who,
    rfc3339,
)

log = logging.getLogger("capt.simulator")


class BootMixin:
    """Boot, cloud-init and kubeadm init/join for `World`."""

    # -- boot --------------------------------------------------------------------------------

    def boot_delay(self, m: Machine) -> float:
        for name in m.names():
            if name in self.faults.slow_boot:
                return self.faults.slow_boot[name]
        return self.settings.boot_delay

    def due_boots(self) -> list[Machine]:
        with self.lock:
            now = self.clock()
            return [
                m
                for m in self.machines.values()
                if m.phase == "waiting"
                and m.alive
                and m.running_since is not None
                and now >= m.running_since + self.boot_delay(m)
                and now >= m.next_try
            ]

    def boot_step(self, m: Machine, io: BootIO) -> None:
        """Run the boothook (I/O, outside the lock), then cloud-init and kubeadm."""
        v = m.view
        try:
            if m.boothook is None and m.bootstrap is None:
                text = io.user_data(v)
                if not text:
                    with self.lock:
                        self._finish(m, "ignored", "no user data: not a capt node")
                    return
                parsed = cloudinit.parse_user_data(text)
                m.boothook, m.bootstrap = parsed.boothook, parsed.cloud_config
            if m.image is None:
                m.image = io.image(v) or ImageInfo(name="", architecture="x86_64")
            if m.bootstrap is None:
                assert m.boothook is not None
                hook = m.boothook
                chunks = []
                for i, name in enumerate(cloudinit.chunk_names(hook)):
                    data = io.read_secret(hook.region, hook.endpoint, name)
                    if data is None:
                        self._chunk_missing(m, i)
                        return
                    chunks.append(data)
                m.bootstrap = cloudinit.reassemble(chunks)
                for name in cloudinit.chunk_names(hook):
                    try:
                        io.delete_secret(hook.region, hook.endpoint, name)
                    except Exception as err:  # noqa: BLE001 - the boothook only logs this too
                        log.warning("%s: boothook could not delete %s: %s", _who(m), name, err)
                log.info(
                    "%s: boothook fetched %d chunk(s) of bootstrap data and deleted them",
                    _who(m),
                    hook.chunks,
                )
        except cloudinit.BootstrapFormatError as err:
            with self.lock:
                self._finish(m, "failed", f"cloud-init: {err}")
            return
        except Exception as err:  # noqa: BLE001 - an AWS hiccup: the boothook would retry
            log.warning("%s: boot step failed, retrying: %s", _who(m), err)
            m.next_try = self.clock() + JOIN_RETRY_SECONDS
            return
        with self.lock:
            m.booted = True
            self._cloud_init(m)

    def _chunk_missing(self, m: Machine, index: int) -> None:
        hook = m.boothook
        assert hook is not None
        with self.lock:
            m.fetch_attempts += 1
            delays = cloudinit.boothook_retry_delays(hook)
            if m.fetch_attempts >= hook.attempts:
                self._finish(
                    m,
                    "failed",
                    f"boothook: could not read chunk {index} of {hook.chunks} ({hook.prefix}-{index})",
                )
                return
            m.next_try = self.clock() + delays[m.fetch_attempts - 1]
            self._log_reason(m, f"boothook: chunk {index} of {hook.chunks} not readable yet; retrying")

    def _cloud_init(self, m: Machine) -> None:
        v = m.view
        assert m.bootstrap is not None and m.image is not None
        data = cloudinit.ec2_instance_data(
            instance_id=v.instance_id,
            local_hostname=v.private_dns,
            local_ipv4=v.private_ip,
            availability_zone=v.availability_zone,
            region=v.region,
            instance_type=v.instance_type,
            image_id=v.image_id,
            architecture=m.image.architecture,
        )
        try:
            rendered, missing = cloudinit.render_cloud_config(m.bootstrap, data)
            if missing:
                log.warning("%s: cloud-init could not render jinja variables %s", _who(m), ", ".join(missing))
            m.task = cloudinit.parse_cloud_config(rendered)
        except cloudinit.BootstrapFormatError as err:
            self._finish(m, "failed", f"cloud-init: {err}")
            return
        # The EC2 hostname is the first label of the private DNS name.
        m.hostname = (v.private_dns or v.instance_id).split(".")[0]
        m.phase = "joining"
        m.join_deadline = self.clock() + self.settings.join_timeout
        self._kubeadm(m)

    def _kubeadm(self, m: Machine) -> None:
        assert m.task is not None
        image_version = kubeadm.version_from_image_name(m.image.name if m.image else None)
        try:
            if m.task.action == "init":
                plan = kubeadm.plan_init(
                    m.task, hostname=m.hostname, image_version=image_version, now=self.now()
                )
                self._init(m, plan)
            else:
                join = kubeadm.plan_join(
                    m.task,
                    hostname=m.hostname,
                    provider_id=m.provider_id,
                    peer_host=m.view.private_ip,
                    image_version=image_version,
                    find_cluster=self._cluster_facts,
                    now=self.now(),
                )
                self._join(m, join)
        except kubeadm.Refused as refusal:
            if refusal.permanent:
                self._finish(m, "failed", f"kubeadm {m.task.action} refused: {refusal.reason}")
            elif self.clock() >= m.join_deadline:
                self._finish(
                    m,
                    "failed",
                    f"kubeadm {m.task.action} gave up after {self.settings.join_timeout:g}s: {refusal.reason}",
                )
            else:
                m.next_try = self.clock() + JOIN_RETRY_SECONDS
                self._log_reason(m, f"kubeadm {m.task.action} waiting: {refusal.reason}")

    def _finish(self, m: Machine, phase: str, reason: str) -> None:
        m.phase, m.reason = phase, reason
        if phase == "failed":
            log.warning("%s: %s — the node will not join", _who(m), reason)
        else:
            log.info("%s: %s", _who(m), reason)

    def _log_reason(self, m: Machine, reason: str) -> None:
        m.reason = reason
        if reason != m.logged:
            m.logged = reason
            log.warning("%s: %s", _who(m), reason)

    # -- kubeadm init / join ----------------------------------------------------------------------

    def _init(self, m: Machine, plan: kubeadm.InitPlan) -> None:
        existing = self.clusters.get(plan.endpoint_host)
        if existing is not None and self._api_up(existing):
            raise kubeadm.Refused(
                f"a control plane already answers at {plan.endpoint_host}:{existing.endpoint_port} "
                f"(cluster {existing.name}): a second `kubeadm init` would start a separate cluster"
            )
        for w in plan.warnings:
            log.warning("%s: kubeadm init: %s", _who(m), w)
        ca_cert, ca_key = (plan.ca_cert, plan.ca_key) if plan.ca_cert and plan.ca_key else self._new_ca()
        now = self.now()
        cluster = Cluster(
            key=plan.endpoint_host,
            name=plan.cluster_name,
            tag_cluster=m.view.cluster,
            endpoint_port=plan.endpoint_port,
            version=plan.version,
            ca_cert=ca_cert,
            ca_key=ca_key,
            created=now,
        )
        cluster.serving = self._issue_serving_cert(ca_cert, ca_key, plan.endpoint_host)
        cluster.objects.update(
            kube_system.initial_objects(cluster.name, cluster.version, rfc3339(now) or "", cluster.next_rv)
        )
        self.clusters[cluster.key] = cluster
        for token in plan.tokens:
            secret = kubeadm.token_secret(token, "created by kubeadm init")
            self._store_secret(cluster, secret)
        for i in range(2):
            self._add_pod(
                cluster,
                Pod(
                    namespace="kube-system",
                    name=f"coredns-{_suffix(cluster.name, 'rs')}-{_suffix(cluster.name, str(i), 5)}",
                    node_name=None,
                    created=now,
                    owner_kind="ReplicaSet",
                    owner_name=f"coredns-{_suffix(cluster.name, 'rs')}",
                    tolerations=({"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"},),
                    labels={"k8s-app": "kube-dns"},
                ),
            )
        self._register(m, cluster, plan.node, plan.kubelet_version, control_plane=True)
        log.info(
            "%s: kubeadm init: cluster %s (%s) at https://%s:%d, node %s",
            _who(m),
            cluster.name,
            cluster.version,
            cluster.key,
            cluster.endpoint_port,
            plan.node.name,
        )

    def _join(self, m: Machine, plan: kubeadm.JoinPlan) -> None:
        cluster = self.clusters[plan.cluster.endpoint_host]
        for w in plan.warnings:
            log.warning("%s: kubeadm join: %s", _who(m), w)
        if m.view.cluster != cluster.tag_cluster:
            log.warning(
                "%s: instance of cluster %s joins cluster %s at %s",
                _who(m),
                m.view.cluster,
                cluster.tag_cluster,
                cluster.key,
            )
        if plan.bumps_version_to:
            log.info(
                "cluster %s: kubeadm-config kubernetesVersion %s -> %s",
                cluster.name,
                cluster.version,
                plan.bumps_version_to,
            )
            cluster.version = plan.bumps_version_to
            if (config := cluster.objects.get(kube_system.KUBEADM_CONFIG)) is not None:
                kube_system.set_kubernetes_version(config, cluster.version)
        self._register(m, cluster, plan.node, plan.kubelet_version, control_plane=plan.control_plane)
        log.info(
            "%s: kubeadm join%s: node %s joined cluster %s with token %s",
            _who(m),
            " --control-plane" if plan.control_plane else "",
            plan.node.name,
            cluster.name,
            plan.token_id,
        )

    def _register(
        self,
        m: Machine,
        cluster: Cluster,
        reg: kubeadm.NodeRegistration,
        kubelet: str,
        *,
        control_plane: bool,
    ) -> None:
        m.phase, m.reason = "joined", ""
        m.cluster_key, m.node_name, m.control_plane = cluster.key, reg.name, control_plane
        m.task = None  # the kubeadm config (token, keys) is no longer needed
        if reg.name in cluster.nodes:
            # A NotReady namesake (its instance gone, its IP reused): the new kubelet takes it over.
            self._delete_node(cluster, reg.name, f"taken over by {m.instance_id}")
        if control_plane:
            cluster.control_plane_instances.add(m.instance_id)
            member = cluster.etcd.add(reg.name, m.view.private_ip or m.view.instance_id)
            cluster.member_instances[member.id] = m.instance_id
        self._create_node(m, cluster, reg, kubelet)

    def _create_node(self, m: Machine, cluster: Cluster, reg: kubeadm.NodeRegistration, kubelet: str) -> None:
        v = m.view
        arch = "arm64" if m.image and m.image.architecture == "arm64" else "amd64"
        labels = {
            "kubernetes.io/hostname": reg.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "node.kubernetes.io/instance-type": v.instance_type,
            "topology.kubernetes.io/region": v.region,
            "topology.kubernetes.io/zone": v.availability_zone,
            **reg.labels,
        }
        if m.control_plane:
            labels[CONTROL_PLANE_LABEL] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        if reg.taints is not None:
            taints = [dict(t) for t in reg.taints]
        else:
            taints = [dict(CONTROL_PLANE_TAINT)] if m.control_plane else []
        addresses = [{"type": "InternalIP", "address": v.private_ip}] if v.private_ip else []
        addresses += [{"type": "Hostname", "address": reg.name}]
        if v.private_dns:
            addresses += [{"type": "InternalDNS", "address": v.private_dns}]
        node = Node(
            name=reg.name,
            instance_id=v.instance_id,
            provider_id=m.provider_id,
            control_plane=m.control_plane,
            kubelet_version=kubelet,
            labels=labels,
            taints=taints,
            addresses=addresses,
            architecture=arch,
            created=self.now(),
            ready_since=self.now(),
            ready_due=self.clock() + self.settings.ready_delay,
            resource_version=cluster.next_rv(),
        )
        cluster.nodes[node.name] = node
        now = self.now()
        self._add_pod(
            cluster,
            Pod(
                namespace="kube-system",
                name=f"kube-proxy-{_suffix(node.name, 'kube-proxy', 5)}",
                node_name=node.name,
                created=now,
                owner_kind="DaemonSet",
                owner_name="kube-proxy",
                labels={"k8s-app": "kube-proxy"},
            ),
        )
        if m.control_plane:
            for component in STATIC_PODS:
                self._add_pod(
                    cluster,
                    Pod(
                        namespace="kube-system",
                        name=f"{component}-{node.name}",
                        node_name=node.name,
                        created=now,
                        owner_kind="Node",
                        owner_name=node.name,
                        mirror=True,
                        labels={"component": component, "tier": "control-plane"},
                    ),
                )

    # -- cluster facts for joins -----------------------------------------------------------------

    def _cluster_facts(self, host: str, port: int) -> kubeadm.ClusterFacts | None:
        cluster = self.clusters.get(host.lower())
        if cluster is None or cluster.endpoint_port != port or not self._api_up(cluster):
            return None
        tokens: dict[str, kubeadm.TokenFacts] = {}
        for (ns, _), secret in cluster.secrets.items():
            if ns == "kube-system":
                token = kubeadm.token_from_secret(secret)
                if token is not None:
                    tokens[token.id] = token

        def owner(name: str) -> tuple[str, bool] | None:
            node = cluster.nodes.get(name)
            return (node.provider_id, node.ready_status == "True") if node is not None else None

        def etcd_peer(host: str) -> str | None:
            member = cluster.etcd.by_peer(host)
            return member.name if member is not None else None

        return kubeadm.ClusterFacts(
            name=cluster.name,
            endpoint_host=cluster.key,
            endpoint_port=cluster.endpoint_port,
            ca_cert=cluster.ca_cert,
            version=cluster.version,
            tokens=tokens,
            node_owner=owner,
            etcd_peer=etcd_peer,
        )
