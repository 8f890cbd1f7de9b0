"""`World`: the instances and clusters, and the observation of DescribeInstances; the behaviour
comes from the mixins of simulator.world.boot, .kubelet, .api and .admin."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from capt.dev.simulator.ssm import SsmService
from capt.dev.simulator.world.admin import AdminMixin
from capt.dev.simulator.world.api import ApiMixin
from capt.dev.simulator.world.boot import BootMixin
from capt.dev.simulator.world.kubelet import KubeletMixin
from capt.dev.simulator.world.state import (
    Cluster,
    Faults,
    InstanceView,
    Machine,
    Settings,
    _issue_serving_cert,
    _new_ca,
    _replace_state,
    utcnow,
)

log = logging.getLogger("capt.simulator")


# --------------------------------------------------------------------------------------------
# the world


class World(BootMixin, KubeletMixin, ApiMixin, AdminMixin):
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utcnow,
        issue_serving_cert: Callable[[str, str, str], tuple[str, str]] | None = None,
        new_ca: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.clock = clock
        self.now = now
        self.lock = threading.RLock()
        self.machines: dict[str, Machine] = {}
        self.clusters: dict[str, Cluster] = {}
        self.faults = Faults()
        self._issue_serving_cert = issue_serving_cert or _issue_serving_cert
        self._new_ca = new_ca or _new_ca
        self.ssm = SsmService(
            self._run_ssm, self._ssm_managed, delay=lambda: self.settings.ssm_delay, clock=clock, now=now
        )
        self.polls = 0

    # -- observation -----------------------------------------------------------------------

    def observe(self, views: list[InstanceView]) -> None:
        """The result of one DescribeInstances (all regions): new instances, state changes, and
        instances no longer listed (deleted)."""
        with self.lock:
            self.polls += 1
            now = self.clock()
            seen = set()
            for v in views:
                seen.add(v.instance_id)
                m = self.machines.get(v.instance_id)
                if m is None:
                    m = self.machines[v.instance_id] = Machine(view=v, first_seen=now)
                    log.info(
                        "instance %s (cluster %s, machine %s, %s) seen %s",
                        v.instance_id,
                        v.cluster,
                        v.machine or "-",
                        v.role,
                        v.state,
                    )
                elif m.view.state != v.state:
                    log.info(
                        "instance %s (machine %s): %s -> %s",
                        v.instance_id,
                        v.machine or "-",
                        m.view.state,
                        v.state,
                    )
                    m.view = v
                else:
                    m.view = v
                self._liveness(m, now)
            for m in list(self.machines.values()):
                if m.instance_id not in seen and m.view.state != "gone":
                    log.info(
                        "instance %s (machine %s) is no longer listed", m.instance_id, m.view.machine or "-"
                    )
                    m.view = _replace_state(m.view, "gone")
                    self._liveness(m, now)
                if (
                    m.instance_id not in seen
                    and m.gone_since is not None
                    and now - m.gone_since > max(60.0, 3 * self.settings.node_gone_delay)
                    and self._node_of(m) is None
                ):
                    del self.machines[m.instance_id]  # long gone, its Node too: forget it

    def _liveness(self, m: Machine, now: float) -> None:
        if m.alive:
            if m.running_since is None:
                m.running_since = now
            if m.gone_since is not None:
                m.gone_since = None
                node = self._node_of(m)
                if node is not None:
                    node.ready_due = now + self.settings.ready_delay
                    log.info("node %s: instance %s runs again; kubelet back", node.name, m.instance_id)
        else:
            m.running_since = None if m.phase == "waiting" else m.running_since
            if m.gone_since is None:
                m.gone_since = now
                node = self._node_of(m)
                if node is not None:
                    self._set_ready(
                        node, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
                    )
                    log.info("node %s: instance %s is %s: NotReady", node.name, m.instance_id, m.view.state)
