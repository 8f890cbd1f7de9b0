"""The chaos suite's scenarios and settings: a scenario is a cluster's lifecycle in phases, some
carrying a chaos point (a kill point, a history trigger, a worker environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from capt.activities.aws import faults
from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT


EXAMPLE = ROOT / "examples" / "capi-quickstart.yaml"
VERSION, UPGRADE_VERSION = "v1.20.5", "v1.21.2"
DEFAULT_REPORT = Path(".capt-chaos") / "report.md"
# The simulator's knobs, tuned down for speed (docs/simulator.md); capt's own timings are untouched.
SIM_SETTINGS = {"boot_delay": 1, "ready_delay": 1, "poll_interval": 1, "node_gone_delay": 5}
PHASE_TIMEOUT = 300.0
FAULTS_PHASE_TIMEOUT = 900.0
# A converged cluster's last clean-ups (a machine deleting its bootstrap secret right after it
# reported Running) may trail its status: the audit is repeated for this long until clean.
AUDIT_SETTLE = 20.0
POLL = 0.5
SERVER_DOWN_SECONDS = 3.0
FAULTS = "lost=0.1,throttle=0.3,seed={seed},ops=mutating"

Op = Literal["create", "scale-md", "scale-cp", "upgrade", "delete"]


# --------------------------------------------------------------------------------------------
# scenarios


@dataclass(frozen=True)
class Trigger:
    """Kill -9 `target` at the nth `event` type in `workflow`'s history after the phase began."""

    target: Literal["worker", "temporal"]
    workflow: Literal["cluster", "infra", "controlplane", "md"]
    event: str
    nth: int = 1

    def __str__(self) -> str:
        what = "Temporal server" if self.target == "temporal" else "worker"
        return f"{what} at {self.workflow} {self.event}#{self.nth}"


@dataclass(frozen=True)
class Phase:
    op: Op
    value: int | str | None = None
    kill: str | None = None  # CAPT_CHAOS_KILL for this phase's worker
    trigger: Trigger | None = None

    @property
    def chaos(self) -> str:
        return self.kill or (str(self.trigger) if self.trigger else "")

    def __str__(self) -> str:
        return self.op + (f" {self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class Scenario:
    id: str
    about: str
    phases: tuple[Phase, ...]
    cp: int = 1
    md: int = 1
    worker_env: dict[str, str] = field(default_factory=dict)  # for the whole lifecycle
    timeout: float = PHASE_TIMEOUT

    @property
    def chaos_points(self) -> int:
        return sum(1 for p in self.phases if p.chaos)


def K(activity: str, when: str, nth: int = 1) -> str:
    return f"{activity}:{when}:{nth}"


def _server_trigger(workflow: str) -> Trigger:
    return Trigger("temporal", workflow, "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED", 1)  # type: ignore[arg-type]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "vpc",
        "create: after the VPC is created; delete: after DeleteVpc",
        (Phase("create", kill=K("ensure_vpc", "after")), Phase("delete", kill=K("delete_vpc", "after"))),
    ),
    Scenario(
        "nat",
        "create: after CreateNatGateway; delete: after DeleteNatGateway",
        (
            Phase("create", kill=K("ensure_nat_gateway", "after")),
            Phase("delete", kill=K("delete_nat_gateway", "after")),
        ),
    ),
    Scenario(
        "api-lb",
        "create: after the API load balancer is created; delete: after DeleteLoadBalancer",
        (
            Phase("create", kill=K("ensure_load_balancer", "after")),
            Phase("delete", kill=K("delete_load_balancer", "after")),
        ),
    ),
    Scenario(
        "cp1",
        "create: after RunInstances of the first control-plane machine; delete: after TerminateInstances",
        (
            Phase("create", kill=K("ensure_instance", "after", 1)),
            Phase("delete", kill=K("terminate_instance", "after")),
        ),
    ),
    Scenario(
        "secrets",
        "create: after the cluster PKI is put in Secrets Manager; delete: after the cluster's secrets are deleted",
        (
            Phase("create", kill=K("ensure_cluster_pki", "after")),
            Phase("delete", kill=K("delete_cluster_secrets", "after")),
        ),
    ),
    Scenario(
        "join-before",
        "create: before the joining worker machine's RunInstances; delete: after the NAT's address is released",
        (
            Phase("create", kill=K("ensure_instance", "before", 2)),
            Phase("delete", kill=K("release_eip", "after")),
        ),
    ),
    Scenario(
        "join-after",
        "create: after the joining worker's RunInstances; scale 1→2: after its bootstrap data is stored; "
        "delete: after a security group is deleted",
        (
            Phase("create", kill=K("ensure_instance", "after", 2)),
            Phase("scale-md", 2, kill=K("prepare_bootstrap_data", "after")),
            Phase("delete", kill=K("delete_security_group", "after")),
        ),
    ),
    Scenario(
        "scale",
        "create: after the join token's Secret is created in the workload cluster; scale 1→2: after the "
        "new machine's RunInstances; 2→1: after TerminateInstances; delete: before the first subnet is deleted",
        (
            Phase("create", kill=K("create_bootstrap_token_secret", "after")),
            Phase("scale-md", 2, kill=K("ensure_instance", "after")),
            Phase("scale-md", 1, kill=K("terminate_instance", "after")),
            Phase("delete", kill=K("delete_subnet", "before")),
        ),
    ),
    Scenario(
        "cp-scale",
        "create: after a Running machine's bootstrap data is deleted; control plane 1→3: before the second "
        "joining control plane's RunInstances; 3→1: after the first etcd member removal is sent (SSM); "
        "delete: after the teardown terminated the cluster's instances by tag (cluster deletion skips drain)",
        (
            Phase("create", kill=K("delete_bootstrap_data", "after")),
            Phase("scale-cp", 3, kill=K("ensure_instance", "before", 2)),
            Phase("scale-cp", 1, kill=K("send_etcd_member_removal", "after")),
            Phase("delete", kill=K("terminate_cluster_instances", "after")),
        ),
    ),
    Scenario(
        "cp-rollout",
        "upgrade: control plane rollout, after the old member's etcd removal is confirmed; "
        "delete: after the control plane instance is deregistered from the API load balancer",
        (
            Phase("create"),
            Phase("upgrade", UPGRADE_VERSION, kill=K("check_etcd_member_removal", "after")),
            Phase("delete", kill=K("deregister_from_load_balancer", "after")),
        ),
    ),
    Scenario(
        "md-surge",
        "create (MD 2): after the control plane joins the API load balancer; upgrade: after the MD surge "
        "instance's RunInstances; delete: after a route table is deleted",
        (
            Phase("create", kill=K("register_with_load_balancer", "after")),
            Phase("upgrade", UPGRADE_VERSION, kill=K("ensure_instance", "after", 2)),
            Phase("delete", kill=K("delete_route_table", "after")),
        ),
        md=2,
    ),
    Scenario(
        "md-retire",
        "create (MD 2): after a worker's join token is stored; upgrade: after an old worker's instance is "
        "terminated; delete: after the IGW is deleted",
        (
            Phase("create", kill=K("ensure_bootstrap_token", "after")),
            Phase("upgrade", UPGRADE_VERSION, kill=K("terminate_instance", "after", 2)),
            Phase("delete", kill=K("delete_internet_gateway", "after")),
        ),
        md=2,
    ),
    Scenario(
        "wft-boundary",
        "workflow-task boundaries: worker kill -9 when the control plane starts its machine (create) "
        "and when the deployment starts its surge machine (upgrade, MD 2)",
        (
            Phase(
                "create",
                trigger=Trigger("worker", "controlplane", "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED"),
            ),
            Phase(
                "upgrade",
                UPGRADE_VERSION,
                trigger=Trigger("worker", "md", "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED"),
            ),
            Phase("delete"),
        ),
        md=2,
    ),
    Scenario(
        "server-create",
        "Temporal dev server kill -9 + restart mid-create (when the first machine workflow starts)",
        (Phase("create", trigger=_server_trigger("controlplane")), Phase("delete")),
    ),
    Scenario(
        "server-rollout",
        "Temporal dev server kill -9 + restart mid-rolling-update (MD 2, when the surge machine starts)",
        (Phase("create"), Phase("upgrade", UPGRADE_VERSION, trigger=_server_trigger("md")), Phase("delete")),
        md=2,
    ),
    Scenario(
        "aws-faults",
        "10 % lost responses and 30 % throttling on every mutating AWS call: create → upgrade → delete",
        (Phase("create"), Phase("upgrade", UPGRADE_VERSION), Phase("delete")),
        worker_env={faults.ENV_VAR: FAULTS},
        timeout=FAULTS_PHASE_TIMEOUT,
    ),
)


def scenario(id_: str) -> Scenario:
    for s in SCENARIOS:
        if s.id == id_:
            return s
    raise KeyError(id_)
