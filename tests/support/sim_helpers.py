"""A World driven by a fake clock and a fake AWS, fed with capt's real bootstrap data."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from capt.activities.aws import secrets as sm
from capt.activities.kubeadm import cloud_init, tokens
from capt.dev.simulator.world.core import World
from capt.dev.simulator.world.state import ImageInfo, InstanceView, Settings
from capt.dev.testkit import bootstrap_reference as ref

REGION = "ap-northeast-2"
VERSION = ref.reference_cluster().control_plane.version
IMAGE = ImageInfo(name=f"capa-ami-ubuntu-24.04-{VERSION}-1700000000", architecture="x86_64")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.wall = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def mono(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.wall += dt.timedelta(seconds=seconds)


class FakeAws:
    """BootIO over dicts: user data by instance id, secrets by name."""

    def __init__(self) -> None:
        self.user_data_by_id: dict[str, str] = {}
        self.secrets: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self.image_info = IMAGE

    def user_data(self, view: InstanceView) -> str | None:
        return self.user_data_by_id.get(view.instance_id)

    def image(self, view: InstanceView) -> ImageInfo | None:
        return self.image_info

    def read_secret(self, region: str, endpoint: str, name: str) -> bytes | None:
        return self.secrets.get(name)

    def delete_secret(self, region: str, endpoint: str, name: str) -> None:
        self.secrets.pop(name, None)
        self.deleted.append(name)


def view(
    n: int,
    machine: str,
    role: str = "control-plane",
    state: str = "running",
    cluster: str = "capi-quickstart",
) -> InstanceView:
    return InstanceView(
        instance_id=f"i-{n:017x}",
        state=state,
        cluster=cluster,
        machine=machine,
        role=role,
        private_dns=f"ip-10-0-1-{n}.{REGION}.compute.internal",
        private_ip=f"10.0.1.{n}",
        availability_zone=f"{REGION}a",
        image_id="ami-0123456789abcdef0",
        instance_type="t3.large",
        region=REGION,
    )


class Sim:
    """A World plus the fake AWS and clock, with helpers to launch machines."""

    def __init__(self, **settings: float) -> None:
        self.clock = Clock()
        self.aws = FakeAws()
        self.world = World(
            Settings(**settings),
            clock=self.clock.mono,
            now=self.clock.now,
            issue_serving_cert=lambda cert, key, host: ("serving-cert", "serving-key"),
        )
        self.views: dict[str, InstanceView] = {}

    def bootstrap(
        self,
        v: InstanceView,
        kind: str,
        *,
        token: tokens.BootstrapToken | None = None,
        ca_hash: str | None = None,
        chunk_size: int = 2048,
    ) -> None:
        cluster = ref.reference_cluster()
        r = ref.render_input(cluster, kind, tok=token)
        if ca_hash is not None:
            r = replace(r, inputs=replace(r.inputs, ca_cert_hash=ca_hash))
        data = cloud_init.compress(cloud_init.render_cloud_config(r))
        prefix = f"capt/default/{cluster.name}/bootstrap/{v.machine}-{v.instance_id}"
        chunks = sm.split_chunks(data, chunk_size)
        for i, chunk in enumerate(chunks):
            self.aws.secrets[sm.chunk_name(prefix, i)] = chunk
        self.aws.user_data_by_id[v.instance_id] = cloud_init.render_user_data(
            secret_prefix=prefix, chunks=len(chunks), region=REGION
        )

    def launch(self, n: int, machine: str, kind: str, **kw) -> InstanceView:
        role = "node" if kind == "join-worker" else "control-plane"
        v = view(n, machine, role)
        self.bootstrap(v, kind, **kw)
        self.views[v.instance_id] = v
        return v

    def set_state(self, v: InstanceView, state: str) -> InstanceView:
        new = replace(v, state=state)
        self.views[v.instance_id] = new
        return new

    def forget(self, v: InstanceView) -> None:
        del self.views[v.instance_id]

    def step(self, seconds: float = 0.0) -> None:
        """Time passes, then one poll/boot/tick round, as the simulator's loop does."""
        self.clock.advance(seconds)
        self.world.observe(list(self.views.values()))
        for m in self.world.due_boots():
            self.world.boot_step(m, self.aws)
        self.world.tick()

    def run(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(int(seconds / step)):
            self.step(step)

    def machine(self, v: InstanceView):
        return self.world.machines[v.instance_id]

    @property
    def cluster(self):
        return self.world.clusters[ref.ENDPOINT.lower()]

    def token_secret(self, token: tokens.BootstrapToken) -> None:
        self.world.store_secret(self.cluster, tokens.bootstrap_token_secret(token))

    def new_token(self, minutes: int = 15) -> tokens.BootstrapToken:
        return tokens.new_token(self.clock.now(), dt.timedelta(minutes=minutes))
