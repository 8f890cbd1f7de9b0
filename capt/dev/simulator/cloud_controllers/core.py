"""`CloudControllers`: one reconcile round (snapshot under the world's lock, AWS calls outside it,
write back under it) and its retry bookkeeping; the steps come from the mixins of
simulator.cloud_controllers.snapshot, .load_balancers, .volumes and .write_back."""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError

from capt.dev.simulator.cloud_controllers.load_balancers import LoadBalancerMixin
from capt.dev.simulator.cloud_controllers.names import RETRY_FIRST, RETRY_MAX, CloudOptions
from capt.dev.simulator.cloud_controllers.snapshot import SnapshotMixin
from capt.dev.simulator.cloud_controllers.volumes import VolumeMixin
from capt.dev.simulator.cloud_controllers.work import (
    CloudContext,
    CloudIO,
    ClusterWork,
    Pending,
    Results,
    _LbMemo,
    _Retry,
    _SgDeletes,
)
from capt.dev.simulator.cloud_controllers.write_back import WriteBackMixin
from capt.dev.simulator.world.core import World

log = logging.getLogger("capt.simulator")


# --------------------------------------------------------------------------------------------
# the controllers


class CloudControllers(SnapshotMixin, LoadBalancerMixin, VolumeMixin, WriteBackMixin):
    def __init__(self, world: World, aws: CloudIO, options: CloudOptions | None = None) -> None:
        self.world = world
        self.aws = aws
        self.options = options or CloudOptions()
        self._lbs: dict[tuple[str, str], _LbMemo] = {}  # (cluster key, service uid)
        self._sg_deletes: dict[tuple[str, str], _SgDeletes] = {}
        self._attached: dict[tuple[str, str], str] = {}  # (cluster key, volume id) -> instance id
        self._retry: dict[tuple, _Retry] = {}
        self._context_logged: dict[str, str] = {}

    # -- one round -------------------------------------------------------------------------

    def reconcile(self) -> None:
        with self.world.lock:
            works = [w for c in list(self.world.clusters.values()) if (w := self._snapshot(c)) is not None]
        for work in works:
            results = self._act(work)
            with self.world.lock:
                cluster = self.world.clusters.get(work.context.cluster_key)
                if cluster is not None:
                    self._write_back(cluster, work, results)

    # -- AWS (outside the lock) ------------------------------------------------------------------

    def _act(self, work: ClusterWork) -> Results:
        results = Results()
        ctx = work.context
        for item in work.services:
            retry_key = ("svc", ctx.cluster_key, item.uid)
            try:
                if item.action == "ensure":
                    hostname = self._ensure_load_balancer(ctx, item)
                    self._lbs[(ctx.cluster_key, item.uid)] = _LbMemo(item.signature, hostname)
                    results.hostnames[item.key] = (item.uid, hostname)
                else:
                    self._delete_load_balancer(ctx, item)
                    self._lbs.pop((ctx.cluster_key, item.uid), None)
                    results.lbs_deleted[item.key] = item.uid
                self._succeeded(retry_key)
            except (ClientError, BotoCoreError, Pending, ValueError) as err:
                self._failed(
                    retry_key,
                    f"service {item.namespace}/{item.name}: {item.action} {item.lb_name}: {err}",
                    ctx,
                )
        if work.csi:
            self._act_volumes(work, results)
        return results

    def _act_volumes(self, work: ClusterWork, results: Results) -> None:
        ctx = work.context
        for item in work.provisions:
            retry_key = ("pvc", ctx.cluster_key, item.pvc_uid)
            try:
                volume_id = self._create_volume(ctx, item)
                results.provisioned.append((item, volume_id))
                self._succeeded(retry_key)
            except (ClientError, BotoCoreError) as err:
                self._failed(
                    retry_key, f"provisioning {item.pv} for {item.pvc_key[2]}/{item.pvc_key[3]}: {err}", ctx
                )
        self._attach_detach(work)
        for item in work.volume_deletes:
            retry_key = ("pv", ctx.cluster_key, item.pv)
            try:
                self._delete_volume(ctx, item)
                results.volumes_deleted.append(item)
                self._succeeded(retry_key)
            except (ClientError, BotoCoreError, Pending) as err:
                self._failed(retry_key, f"deleting {item.volume_id} of {item.pv}: {err}", ctx)

    def _succeeded(self, key: tuple) -> None:
        self._retry.pop(key, None)

    def _failed(self, key: tuple, message: str, ctx: CloudContext) -> None:
        r = self._retry.setdefault(key, _Retry())
        r.delay = min(RETRY_MAX, r.delay * 2 if r.delay else RETRY_FIRST)
        r.due = self.world.clock() + r.delay
        if r.logged != message:
            r.logged = message
            log.warning("cluster %s: %s (retrying)", ctx.cluster_name, message)

    def _note(self, key: tuple, message: str) -> None:
        r = self._retry.setdefault(key, _Retry())
        if r.logged != message:
            r.logged = message
            log.warning("%s", message)
