"""etcd membership of a workload cluster's control plane, through SSM Run Command.

Why this way
- kubeadm's control plane runs "stacked" etcd: one member per control-plane node, reachable only on
  the nodes themselves (127.0.0.1:2379 / the node's IP, with client certificates from the etcd CA).
  The Kubernetes API does not proxy etcd's API, so the API client cannot do this; CAPI dials etcd
  through a port-forward to the etcd pod, a streaming protocol capt does not implement.
- capt runs `etcdctl` on a *healthy* control-plane node via SSM Run Command (AWS-RunShellScript):
  list the members, remove the departing machine's member (matched by name — kubeadm names it after
  the node — or by its peer URL's host, which also finds a member that was added but never started
  and so has no name), and list again. This works whether or not the departing instance still
  runs (a machine remediated for being broken cannot be asked to remove itself, which is why capt
  does not use `kubeadm reset phase remove-etcd-member` on the departing node), the removal is a
  Raft proposal that only succeeds with quorum, and the confirming list comes from the surviving
  cluster in the same transcript. Running it twice is harmless: an absent member is reported as
  absent and the after-list still confirms it.
- `etcdctl` is used from the host if installed, otherwise inside the running etcd container through
  `crictl exec` (CAPA's images have crictl; the etcd image ships etcdctl; kubeadm mounts
  /etc/kubernetes/pki/etcd at the same path in the container). It authenticates with kubeadm's
  etcd health-check client certificate.

The script is POSIX sh (the SSM agent runs AWS-RunShellScript commands with `sh`), exits non-zero
when etcdctl fails (SSM then reports the command Failed), and prints markers around etcdctl's own
output so the transcript can be judged.

Waiting: send and check are separate short activities. The workflow sends, then checks after a
durable `workflow.sleep` until the state is final; no activity sleeps. A command that fails (e.g. the
chosen node's etcd is unhealthy, or no quorum) can be re-sent through another healthy node.

Output contract (what the script prints on stdout; an SSM emulator must print the same):

    capt-etcd: members-before          ┐
    <etcdctl member list -w simple>    │ removal only
    capt-etcd: removed <hex id>        │ (one per removed member) or
    capt-etcd: absent                  │ (no member matched)
    capt-etcd: members-after           ┘
    capt-etcd: members                   (list only)
    <etcdctl member list -w simple>
    capt-etcd: done

Member lines are etcdctl's simple format: `<hex id>, <started|unstarted>, <name>, <peer URLs>,
<client URLs>[, <is learner>]`, URLs comma-joined.

Confirmation semantics: removal is `confirmed` only when the command succeeded, the transcript is
complete (ends with `done`), the after-list names at least one member (the healthy node's own) and
none of them matches the departing member. A successful command with output that is missing or
incomplete (SSM truncates stdout; moto runs nothing and returns empty output) is `unknown`, which is
NOT a confirmation: the caller must not terminate the instance on it, but re-send (possibly through
another node) and, if it stays unknown, fail the deletion with the reason. Terminating a control-plane
instance whose member is still in the list leaves etcd one failure closer to losing quorum.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Literal
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from capt.activities.aws import session
from capt.activities.aws.errors import CaptAwsError, error_code
from capt.activities.aws.models import AwsResult
from capt.activities.aws.session import aws_activity

DOCUMENT = "AWS-RunShellScript"
MARK = "capt-etcd:"
DEFAULT_EXECUTION_TIMEOUT = 120
# SendCommand's TimeoutSeconds: how long the command may wait to be delivered (AWS minimum 30).
DELIVERY_TIMEOUT = 60
OUTPUT_EXCERPT = 500

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

PENDING_STATUSES = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})


class EtcdRequestError(CaptAwsError):
    """The request cannot be carried out as asked (not retryable)."""


# --------------------------------------------------------------------------------------------
# the script

_PRELUDE = r"""#!/bin/sh
set -eu
PKI=/etc/kubernetes/pki/etcd
ETCD_FLAGS="--endpoints=https://127.0.0.1:2379 --cacert=$PKI/ca.crt --cert=$PKI/healthcheck-client.crt --key=$PKI/healthcheck-client.key --command-timeout=15s"
etcdctl_() {
  if command -v etcdctl >/dev/null 2>&1; then
    ETCDCTL_API=3 etcdctl $ETCD_FLAGS "$@"
  else
    cid=$(crictl ps --quiet --state running --name '^etcd$' | head -n 1)
    if [ -z "$cid" ]; then echo "capt-etcd: no running etcd container on this node" >&2; exit 3; fi
    crictl exec "$cid" etcdctl $ETCD_FLAGS "$@"
  fi
}
"""

_LIST = r"""members=$(etcdctl_ member list -w simple)
echo "capt-etcd: members"
printf '%s\n' "$members"
echo "capt-etcd: done"
"""

_REMOVE = r"""matching() {
  awk -F', ' -v name="$MEMBER_NAME" -v host="$MEMBER_PEER_HOST" '{
    hit = ($3 != "" && $3 == name)
    n = split($4, urls, ",")
    for (i = 1; i <= n; i++) {
      u = urls[i]; sub(/^[a-z]+:\/\//, "", u); sub(/:[0-9]+$/, "", u); gsub(/\[|\]/, "", u)
      if (host != "" && u == host) hit = 1
    }
    if (hit) print $1
  }'
}
before=$(etcdctl_ member list -w simple)
echo "capt-etcd: members-before"
printf '%s\n' "$before"
ids=$(printf '%s\n' "$before" | matching)
if [ -z "$ids" ]; then echo "capt-etcd: absent"; fi
for id in $ids; do
  etcdctl_ member remove "$id" >/dev/null
  echo "capt-etcd: removed $id"
done
after=$(etcdctl_ member list -w simple)
echo "capt-etcd: members-after"
printf '%s\n' "$after"
echo "capt-etcd: done"
"""


class EtcdMemberRef(BaseModel):
    """The departing member: its name (the node name) and, if known, its peer host (private IP)."""

    model_config = ConfigDict(frozen=True)

    name: str
    peer_host: str | None = None


def _validate(member: EtcdMemberRef) -> None:
    if not _NODE_NAME.match(member.name):
        raise EtcdRequestError(f"not a node name: {member.name!r}")
    if member.peer_host is not None:
        try:
            ipaddress.ip_address(member.peer_host)
        except ValueError:
            if not _NODE_NAME.match(member.peer_host):
                raise EtcdRequestError(f"not a peer host: {member.peer_host!r}") from None


def list_script() -> str:
    return _PRELUDE + _LIST


def removal_script(member: EtcdMemberRef) -> str:
    _validate(member)
    head = f"MEMBER_NAME={shlex.quote(member.name)}\nMEMBER_PEER_HOST={shlex.quote(member.peer_host or '')}\n"
    return _PRELUDE + head + _REMOVE


# --------------------------------------------------------------------------------------------
# parsing the transcript (pure)


class EtcdMember(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # hex, as etcdctl prints and takes it
    name: str
    started: bool
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    learner: bool = False


def parse_member_line(line: str) -> EtcdMember | None:
    fields = [f.strip() for f in line.split(", ")]
    if len(fields) < 5 or not re.fullmatch(r"[0-9a-f]{1,16}", fields[0]):
        return None
    if fields[1] not in ("started", "unstarted"):
        return None
    urls = lambda text: tuple(u for u in text.split(",") if u)  # noqa: E731
    return EtcdMember(
        id=fields[0],
        name=fields[2],
        started=fields[1] == "started",
        peer_urls=urls(fields[3]),
        client_urls=urls(fields[4]),
        learner=len(fields) > 5 and fields[5] == "true",
    )


def _url_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def matches(member: EtcdMember, ref: EtcdMemberRef) -> bool:
    if member.name and member.name == ref.name:
        return True
    if ref.peer_host:
        want = ref.peer_host.strip("[]").lower()
        return any((_url_host(u) or "").lower() == want for u in member.peer_urls)
    return False


class Transcript(BaseModel):
    """The script's stdout, split at its markers."""

    model_config = ConfigDict(frozen=True)

    complete: bool  # ends with the `done` marker
    sections: dict[str, tuple[EtcdMember, ...]] = {}
    removed_ids: tuple[str, ...] = ()
    absent: bool = False


def parse_transcript(stdout: str) -> Transcript:
    sections: dict[str, list[EtcdMember]] = {}
    removed: list[str] = []
    absent = complete = False
    current: str | None = None
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith(MARK):
            word, _, arg = line[len(MARK) :].strip().partition(" ")
            complete = False
            current = None
            if word in ("members", "members-before", "members-after"):
                current = word
                sections[word] = []
            elif word == "removed":
                removed.append(arg.strip())
            elif word == "absent":
                absent = True
            elif word == "done":
                complete = True
        elif current is not None and line:
            member = parse_member_line(line)
            if member is not None:
                sections[current].append(member)
    return Transcript(
        complete=complete,
        sections={k: tuple(v) for k, v in sections.items()},
        removed_ids=tuple(removed),
        absent=absent,
    )


RemovalState = Literal["pending", "removed", "still-present", "failed", "unknown"]
ListState = Literal["pending", "listed", "failed", "unknown"]


def removal_state(
    status: str, stdout: str, member: EtcdMemberRef
) -> tuple[RemovalState, tuple[EtcdMember, ...]]:
    """Judge a removal command from its SSM status and stdout (see the module's semantics)."""
    if status in PENDING_STATUSES:
        return "pending", ()
    if status != "Success":
        return "failed", ()
    t = parse_transcript(stdout)
    after = t.sections.get("members-after", ())
    if not t.complete or not after:
        return "unknown", after
    if any(matches(m, member) for m in after):
        return "still-present", after
    return "removed", after


def list_state(status: str, stdout: str) -> tuple[ListState, tuple[EtcdMember, ...]]:
    if status in PENDING_STATUSES:
        return "pending", ()
    if status != "Success":
        return "failed", ()
    t = parse_transcript(stdout)
    members = t.sections.get("members", ())
    if not t.complete or not members:
        return "unknown", members
    return "listed", members


# --------------------------------------------------------------------------------------------
# SSM


def _client(region: str):
    return session.client("ssm", region)


def send_script(region: str, instance_id: str, script: str, comment: str, execution_timeout: int) -> str:
    resp = _client(region).send_command(
        InstanceIds=[instance_id],
        DocumentName=DOCUMENT,
        Comment=comment[:100],
        TimeoutSeconds=DELIVERY_TIMEOUT,
        Parameters={"commands": script.splitlines(), "executionTimeout": [str(execution_timeout)]},
    )
    return resp["Command"]["CommandId"]


def invocation(region: str, command_id: str, instance_id: str) -> tuple[str, str, str, str]:
    """(Status, StatusDetails, stdout, stderr); a just-sent command not visible yet is Pending."""
    try:
        resp = _client(region).get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as err:
        if error_code(err) == "InvocationDoesNotExist":
            return "Pending", "InvocationDoesNotExist", "", ""
        raise
    return (
        resp.get("Status", ""),
        resp.get("StatusDetails", ""),
        resp.get("StandardOutputContent") or "",
        resp.get("StandardErrorContent") or "",
    )


def _failure_detail(status: str, details: str, stderr: str) -> str:
    tail = stderr.strip()[-OUTPUT_EXCERPT:]
    return f"{status} ({details})" + (f": {tail}" if tail else "")


# --------------------------------------------------------------------------------------------
# activities


class EtcdMemberRemovalRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str
    # A healthy control-plane instance (not the departing one) whose etcd member runs the removal.
    via_instance_id: str
    departing_instance_id: str
    member: EtcdMemberRef
    execution_timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT


class SsmCommandRef(AwsResult):
    command_id: str
    instance_id: str


@aws_activity
def send_etcd_member_removal(req: EtcdMemberRemovalRequest) -> SsmCommandRef:
    """Start removing the departing machine's etcd member, from a healthy control-plane node."""
    if req.via_instance_id == req.departing_instance_id:
        raise EtcdRequestError("the etcd member removal must run on another control-plane instance")
    command_id = send_script(
        req.region,
        req.via_instance_id,
        removal_script(req.member),
        f"capt: remove etcd member {req.member.name}",
        req.execution_timeout_seconds,
    )
    return SsmCommandRef(command_id=command_id, instance_id=req.via_instance_id)


class EtcdMemberRemovalCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str
    command_id: str
    instance_id: str
    member: EtcdMemberRef


class EtcdMemberRemovalStatus(AwsResult):
    state: RemovalState
    confirmed: bool  # only for "removed": the member is provably not in the surviving cluster
    members: tuple[EtcdMember, ...] = ()  # the after-list, when there is one
    detail: str = ""


@aws_activity
def check_etcd_member_removal(req: EtcdMemberRemovalCheck) -> EtcdMemberRemovalStatus:
    """One look at the removal command: pending, removed (confirmed), still-present, failed or
    unknown (succeeded without a usable transcript: not a confirmation)."""
    status, details, stdout, stderr = invocation(req.region, req.command_id, req.instance_id)
    state, members = removal_state(status, stdout, req.member)
    detail = {
        "pending": f"command {status}",
        "removed": f"member {req.member.name} is not among the {len(members)} remaining members",
        "still-present": f"member {req.member.name} is still listed after the removal",
        "failed": _failure_detail(status, details, stderr),
        "unknown": f"command {status} but its output holds no complete member list; removal not confirmed",
    }[state]
    return EtcdMemberRemovalStatus(state=state, confirmed=state == "removed", members=members, detail=detail)


class EtcdMemberListRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str
    via_instance_id: str
    execution_timeout_seconds: int = DEFAULT_EXECUTION_TIMEOUT


@aws_activity
def send_etcd_member_list(req: EtcdMemberListRequest) -> SsmCommandRef:
    """Start `etcdctl member list` on a control-plane node (health checks, quorum arithmetic)."""
    command_id = send_script(
        req.region,
        req.via_instance_id,
        list_script(),
        "capt: list etcd members",
        req.execution_timeout_seconds,
    )
    return SsmCommandRef(command_id=command_id, instance_id=req.via_instance_id)


class EtcdMemberListCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str
    command_id: str
    instance_id: str


class EtcdMembers(AwsResult):
    state: ListState
    members: tuple[EtcdMember, ...] = ()
    detail: str = ""


@aws_activity
def check_etcd_member_list(req: EtcdMemberListCheck) -> EtcdMembers:
    status, details, stdout, stderr = invocation(req.region, req.command_id, req.instance_id)
    state, members = list_state(status, stdout)
    detail = {
        "pending": f"command {status}",
        "listed": f"{len(members)} members",
        "failed": _failure_detail(status, details, stderr),
        "unknown": f"command {status} but its output holds no complete member list",
    }[state]
    return EtcdMembers(state=state, members=members, detail=detail)


ACTIVITIES = [
    send_etcd_member_removal,
    check_etcd_member_removal,
    send_etcd_member_list,
    check_etcd_member_list,
]
