"""A workload cluster's stacked etcd, and what capt's SSM scripts print when run against it.

Each control-plane node (init or `join --control-plane`) adds a member named after the node, with
peer URL https://<private ip>:2380. A member is healthy while its node's instance runs and no
fault marks it unhealthy. Membership changes need a quorum of healthy voting members, as Raft
does; listing is served by the local member alone.

`run_script` executes the two scripts capt/activities/workload/etcd.py sends through SSM Run Command
(list, and remove-by-name-or-peer-host) on one node, following that module's output contract —
markers, `etcdctl member list -w simple` lines, `set -e` semantics (a failing etcdctl ends the
script with no further output, and a non-zero exit code).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from capt.dev.simulator.cloudinit import shell_vars

MARK = "capt-etcd:"


@dataclass
class Member:
    id: str  # hex, as etcdctl prints it (no leading zeros)
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    started: bool = True
    learner: bool = False

    def simple_line(self) -> str:
        return ", ".join(
            [
                self.id,
                "started" if self.started else "unstarted",
                self.name if self.started else "",
                ",".join(self.peer_urls),
                ",".join(self.client_urls),
                "true" if self.learner else "false",
            ]
        )

    def peer_hosts(self) -> set[str]:
        hosts = set()
        for url in self.peer_urls:
            try:
                host = urlsplit(url).hostname
            except ValueError:
                host = None
            if host:
                hosts.add(host.lower())
        return hosts


@dataclass
class EtcdCluster:
    members: dict[str, Member] = field(default_factory=dict)
    _salt: int = 0

    def by_peer(self, ip: str) -> Member | None:
        url = f"https://{ip}:2380"
        return next((m for m in self.members.values() if url in m.peer_urls), None)

    def add(self, name: str, ip: str) -> Member:
        """`etcdctl member add` for a new control-plane node. Like etcd, it refuses a peer URL that
        is already a member's (the caller checks `by_peer` first and reports it)."""
        if self.by_peer(ip) is not None:
            raise ValueError(f"etcdserver: Peer URLs already exists (https://{ip}:2380)")
        self._salt += 1
        digest = hashlib.sha256(f"{name}/{ip}/{self._salt}".encode()).hexdigest()[:16]
        member = Member(
            id=format(int(digest, 16), "x"),
            name=name,
            peer_urls=(f"https://{ip}:2380",),
            client_urls=(f"https://{ip}:2379",),
        )
        self.members[member.id] = member
        return member

    def by_name(self, name: str) -> Member | None:
        return next((m for m in self.members.values() if m.name == name), None)

    def remove(self, member_id: str) -> bool:
        return self.members.pop(member_id, None) is not None

    def list_output(self) -> str:
        return "\n".join(m.simple_line() for m in sorted(self.members.values(), key=lambda m: m.id))

    def has_quorum(self, healthy: Callable[[Member], bool]) -> bool:
        voters = [m for m in self.members.values() if not m.learner]
        return bool(voters) and sum(1 for m in voters if healthy(m)) > len(voters) // 2


# --------------------------------------------------------------------------------------------
# SSM scripts


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int
    stdout: str
    stderr: str = ""

    @property
    def status(self) -> str:
        return "Success" if self.exit_code == 0 else "Failed"


def classify_script(commands: list[str]) -> tuple[str, dict[str, str]]:
    """("remove", {MEMBER_NAME, MEMBER_PEER_HOST}) | ("list", {}) | ("unknown", {})."""
    script = "\n".join(commands)
    if "etcdctl_" not in script or MARK not in script:
        return "unknown", {}
    if re.search(r"^MEMBER_NAME=", script, re.MULTILINE):
        v = shell_vars(script)
        return "remove", {
            "MEMBER_NAME": v.get("MEMBER_NAME", ""),
            "MEMBER_PEER_HOST": v.get("MEMBER_PEER_HOST", ""),
        }
    if f'echo "{MARK} members"' in script:
        return "list", {}
    return "unknown", {}


def _matches(member: Member, name: str, peer_host: str) -> bool:
    if name and member.started and member.name == name:
        return True
    return bool(peer_host) and peer_host.strip("[]").lower() in member.peer_hosts()


ETCD_TIMEOUT = (
    '{"level":"warn","msg":"retrying of unary invoker failed","error":"rpc error: code = DeadlineExceeded '
    'desc = context deadline exceeded"}\nError: context deadline exceeded\n'
)


def run_script(
    commands: list[str],
    *,
    etcd: EtcdCluster | None,
    local_member: Member | None,
    healthy: Callable[[Member], bool],
) -> ScriptResult:
    """Run one of capt's etcd scripts on a node: `etcd` is its cluster's membership (None for a
    node without etcd), `local_member` the node's own member (None if it has none)."""
    kind, params = classify_script(commands)
    if kind == "unknown":
        return ScriptResult(127, "", "simulator: this node only runs capt's etcd membership scripts\n")
    if etcd is None or local_member is None or local_member.id not in etcd.members:
        return ScriptResult(3, "", f"{MARK} no running etcd container on this node\n")
    if not healthy(local_member):
        return ScriptResult(1, "", ETCD_TIMEOUT)
    before = etcd.list_output()
    if kind == "list":
        return ScriptResult(0, f"{MARK} members\n{before}\n{MARK} done\n")
    out = [f"{MARK} members-before", before]
    ids = [
        m.id
        for m in sorted(etcd.members.values(), key=lambda m: m.id)
        if _matches(m, params["MEMBER_NAME"], params["MEMBER_PEER_HOST"])
    ]
    if not ids:
        out.append(f"{MARK} absent")
    for member_id in ids:
        if not etcd.has_quorum(healthy):
            # `set -e`: the failing `etcdctl member remove` ends the script here.
            return ScriptResult(1, "\n".join(out) + "\n", "Error: etcdserver: unhealthy cluster\n")
        etcd.remove(member_id)
        out.append(f"{MARK} removed {member_id}")
    out += [f"{MARK} members-after", etcd.list_output(), f"{MARK} done"]
    return ScriptResult(0, "\n".join(out) + "\n")
