"""The admin endpoint's side of the world: fault knobs and the state snapshot (a mixin of `World`)."""

from __future__ import annotations

import logging

from capt.dev.simulator import kube_system
from capt.dev.simulator.world.state import FAULT_KINDS, Faults

log = logging.getLogger("capt.simulator")


class AdminMixin:
    """Faults and the snapshot of `World`."""

    # -- faults ------------------------------------------------------------------------------------

    def set_fault(
        self,
        kind: str,
        target: str,
        *,
        enabled: bool = True,
        seconds: float | None = None,
        count: int | None = None,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
        if not target:
            raise ValueError(
                "a fault needs a target (machine, node, instance id or, for api-5xx, ccm-down and "
                "csi-down, cluster)"
            )
        with self.lock:
            f = self.faults
            if kind == "slow-boot":
                if enabled:
                    if seconds is None or seconds < 0:
                        raise ValueError("slow-boot needs --seconds")
                    f.slow_boot[target] = float(seconds)
                else:
                    f.slow_boot.pop(target, None)
            elif kind == "api-5xx":
                if enabled:
                    f.api_5xx[target] = -1 if not count else int(count)
                else:
                    f.api_5xx.pop(target, None)
            else:
                bucket = {
                    "never-ready": f.never_ready,
                    "not-ready": f.not_ready,
                    "etcd-unhealthy": f.etcd_unhealthy,
                    "ccm-down": f.ccm_down,
                    "csi-down": f.csi_down,
                }[kind]
                (bucket.add if enabled else bucket.discard)(target)
            log.info("fault %s %s %s", kind, target, "on" if enabled else "off")

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = Faults()
            log.info("faults cleared")

    # -- state for the admin endpoint ------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.lock:
            machines = [
                {
                    "instance_id": m.instance_id,
                    "cluster": m.view.cluster,
                    "machine": m.view.machine,
                    "role": m.view.role,
                    "state": m.view.state,
                    "phase": m.phase,
                    "reason": m.reason,
                    "node": m.node_name,
                    "private_dns": m.view.private_dns,
                }
                for m in sorted(
                    self.machines.values(), key=lambda m: (m.view.cluster, m.view.machine, m.instance_id)
                )
            ]
            clusters = []
            for c in sorted(self.clusters.values(), key=lambda c: c.name):
                clusters.append(
                    {
                        "name": c.name,
                        "tag_cluster": c.tag_cluster,
                        "endpoint": f"{c.key}:{c.endpoint_port}",
                        "version": c.version,
                        "api_up": self._api_up(c),
                        "etcd_quorum": self.etcd_quorum(c),
                        "nodes": [
                            {
                                "name": n.name,
                                "instance_id": n.instance_id,
                                "control_plane": n.control_plane,
                                "ready": n.ready_status,
                                "reason": n.ready_reason,
                                "unschedulable": n.unschedulable,
                                "kubelet_version": n.kubelet_version,
                            }
                            for n in sorted(c.nodes.values(), key=lambda n: n.name)
                        ],
                        "etcd_members": [
                            {"id": mem.id, "name": mem.name, "healthy": self.member_healthy(c, mem)}
                            for mem in sorted(c.etcd.members.values(), key=lambda mem: mem.name)
                        ],
                        "pods": len(c.pods),
                        "kube_system": kube_system.summary(c.objects),
                        "cloud": dict(c.cloud),
                        "bootstrap_tokens": sorted(
                            name
                            for (ns, name) in c.secrets
                            if ns == "kube-system" and name.startswith("bootstrap-token-")
                        ),
                    }
                )
            return {
                "settings": dict(vars(self.settings)),
                "faults": self.faults.to_dict(),
                "polls": self.polls,
                "machines": machines,
                "clusters": clusters,
            }
