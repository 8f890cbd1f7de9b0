"""`python -m capt.dev.simulator`: the workload simulator process of the local stack.

    python -m capt.dev.simulator --host 127.0.0.1 --api-port 16443 --port 5100 [--region R ...]
                        [--boot-delay S] [--ready-delay S] [--node-gone-delay S] [--poll-interval S]
                        [--cloud-interval S] [--csi-tag-cluster-id] [--no-csi-extra-create-metadata]

It polls the emulated EC2 (AWS_ENDPOINT_URL) for capt's machine instances, boots them as
cloud-init + kubeadm would, serves the workload clusters' API and SSM Run Command
(simulator.server), and plays each cluster's AWS cloud-controller-manager and EBS CSI driver
against the emulated AWS (simulator.cloud_controllers). Logs go to stdout (`capt dev` keeps them in <state dir>/simulator.log):
every join refusal is logged with its reason. SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from capt.dev.simulator.aws import Aws
from capt.dev.simulator.cloud_controllers.core import CloudControllers
from capt.dev.simulator.cloud_controllers.names import CloudOptions
from capt.dev.simulator.server import AdminServer, KubeServer, serve_in_thread
from capt.dev.simulator.world.core import World
from capt.dev.simulator.world.state import Machine, Settings

log = logging.getLogger("capt.simulator")
TICK_SECONDS = 0.5
BOOT_WORKERS = 4


class Runner:
    """The poll/boot/tick loop around a World."""

    def __init__(self, world: World, aws: Aws, cloud: CloudOptions | None = None) -> None:
        self.world = world
        self.aws = aws
        self.cloud = CloudControllers(world, aws, cloud)
        self._last_cloud = 0.0
        self.stop = threading.Event()
        self._booting: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=BOOT_WORKERS, thread_name_prefix="boot")
        self._last_poll = 0.0
        self._poll_failures = 0

    def _boot(self, m: Machine) -> None:
        try:
            self.world.boot_step(m, self.aws)
        except Exception:  # noqa: BLE001 - keep the loop alive; the machine is retried
            log.exception("boot of %s failed", m.instance_id)
        finally:
            with self.world.lock:
                self._booting.discard(m.instance_id)

    def step(self) -> None:
        now = time.monotonic()
        if now - self._last_poll >= self.world.settings.poll_interval:
            self._last_poll = now
            try:
                self.world.observe(self.aws.describe_instances())
                if self._poll_failures:
                    log.info("DescribeInstances works again")
                self._poll_failures = 0
            except Exception as err:  # noqa: BLE001 - moto restarting, network blip
                self._poll_failures += 1
                if self._poll_failures in (1, 10) or self._poll_failures % 100 == 0:
                    log.warning("DescribeInstances failed (%d in a row): %s", self._poll_failures, err)
        for m in self.world.due_boots():
            with self.world.lock:
                if m.instance_id in self._booting:
                    continue
                self._booting.add(m.instance_id)
            self._pool.submit(self._boot, m)
        self.world.tick()
        if now - self._last_cloud >= self.world.settings.cloud_interval:
            self._last_cloud = now
            try:
                self.cloud.reconcile()
            except Exception:  # noqa: BLE001 - moto restarting, a simulator bug: next round
                log.exception("cloud controllers failed")

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.step()
            except Exception:  # noqa: BLE001
                log.exception("simulator step failed")
            self.stop.wait(
                max(0.05, min(TICK_SECONDS, self.world.settings.poll_interval) - (time.monotonic() - t0))
            )
        self._pool.shutdown(wait=False, cancel_futures=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    p = argparse.ArgumentParser(prog="python -m capt.dev.simulator", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-port", type=int, default=16443, help="HTTPS port of every workload API (by SNI)")
    p.add_argument("--port", type=int, default=5100, help="HTTP port of the admin endpoint and SSM")
    p.add_argument(
        "--region", action="append", default=[], help="region to watch (repeatable; default AWS_REGION)"
    )
    for name in (
        "boot_delay",
        "ready_delay",
        "node_gone_delay",
        "join_timeout",
        "pod_grace",
        "ssm_delay",
        "poll_interval",
        "cloud_interval",
    ):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument(
        "--csi-tag-cluster-id",
        action="store_true",
        help="EBS CSI: tag volumes with the cluster id learned from the instances, as the driver does "
        "with --k8s-tag-cluster-id (a cluster's applied ebs-csi-controller Deployment decides for itself)",
    )
    p.add_argument(
        "--no-csi-extra-create-metadata",
        dest="csi_extra_create_metadata",
        action="store_false",
        help="EBS CSI: no kubernetes.io/created-for/* tags (as the provisioner without --extra-create-metadata)",
    )
    p.add_argument("--log-level", default=os.environ.get("CAPT_SIM_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    regions = args.region or [
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    ]
    settings = Settings(
        **{
            k: getattr(args, k)
            for k in (
                "boot_delay",
                "ready_delay",
                "node_gone_delay",
                "join_timeout",
                "pod_grace",
                "ssm_delay",
                "poll_interval",
                "cloud_interval",
            )
        }
    )
    world = World(settings)
    kube = KubeServer((args.host, args.api_port), world)
    admin = AdminServer((args.host, args.port), world)
    runner = Runner(
        world,
        Aws(regions),
        CloudOptions(
            csi_tag_cluster_id=args.csi_tag_cluster_id,
            csi_extra_create_metadata=args.csi_extra_create_metadata,
        ),
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        runner.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve_in_thread(kube, "workload-api")
    serve_in_thread(admin, "admin")
    log.info(
        "workload simulator: API https://%s:%d (cluster by SNI), admin + SSM http://%s:%d, "
        "EC2 %s in %s, boot %gs, ready %gs",
        args.host,
        args.api_port,
        args.host,
        args.port,
        os.environ.get("AWS_ENDPOINT_URL") or "(default endpoint)",
        ", ".join(regions),
        settings.boot_delay,
        settings.ready_delay,
    )
    runner.run()
    kube.shutdown()
    admin.shutdown()
    kube.server_close()
    admin.server_close()
    log.info("workload simulator stopped")
    return 0
