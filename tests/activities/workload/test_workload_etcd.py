"""etcd membership through SSM Run Command.

- The transcript parser and the removal verdicts, as tables.
- The generated shell script, run for real with `sh` against a fake `etcdctl` (directly, and
  through the `crictl exec` fallback) that keeps a member list in a file.
- The activities against moto's SSM (in-process): what SendCommand carries, moto's empty output
  judged "unknown" (never a confirmation), and — by putting the script's real transcript into
  moto's invocation — the whole send → run → check chain.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ssm.models import ssm_backends
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.workload import etcd

REGION = "ap-northeast-2"
CP1 = "ip-10-0-1-10.ap-northeast-2.compute.internal"
CP2 = "ip-10-0-2-20.ap-northeast-2.compute.internal"
CP3 = "ip-10-0-3-30.ap-northeast-2.compute.internal"
MEMBERS = [
    f"8e9e05c52164694d, started, {CP1}, https://10.0.1.10:2380, https://10.0.1.10:2379, false",
    f"91bc3c398fb3c146, started, {CP2}, https://10.0.2.20:2380, https://10.0.2.20:2379, false",
    f"fd422379fda50e48, started, {CP3}, https://10.0.3.30:2380, https://10.0.3.30:2379, false",
]
UNSTARTED = "a1b2c3d4e5f60718, unstarted, , https://10.0.3.31:2380, , false"


def transcript(before: list[str], after: list[str], removed: list[str] = (), done: bool = True) -> str:
    lines = ["capt-etcd: members-before", *before]
    lines += [f"capt-etcd: removed {i}" for i in removed] or ["capt-etcd: absent"]
    lines += ["capt-etcd: members-after", *after]
    if done:
        lines.append("capt-etcd: done")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# parsing and verdicts


def test_parse_member_line() -> None:
    m = etcd.parse_member_line(MEMBERS[0])
    assert m == etcd.EtcdMember(
        id="8e9e05c52164694d",
        name=CP1,
        started=True,
        peer_urls=("https://10.0.1.10:2380",),
        client_urls=("https://10.0.1.10:2379",),
    )
    u = etcd.parse_member_line(UNSTARTED)
    assert u is not None and (u.name, u.started, u.client_urls) == ("", False, ())
    # etcd 3.3 had no learner column; several URLs are comma-joined.
    old = etcd.parse_member_line("abc, started, n, https://a:2380,https://b:2380, https://a:2379")
    assert old is not None and old.peer_urls == ("https://a:2380", "https://b:2380") and not old.learner
    for junk in (
        "",
        "Error: context deadline exceeded",
        "zz, started, n, u, c, false",
        "abc, weird, n, u, c",
    ):
        assert etcd.parse_member_line(junk) is None


@pytest.mark.parametrize(
    "ref, line, expected",
    [
        (etcd.EtcdMemberRef(name=CP3), MEMBERS[2], True),
        (etcd.EtcdMemberRef(name=CP3), MEMBERS[1], False),
        (etcd.EtcdMemberRef(name="ip-10-0-3-3.ap-northeast-2.compute.internal"), MEMBERS[2], False),
        (etcd.EtcdMemberRef(name=CP3, peer_host="10.0.3.31"), UNSTARTED, True),  # no name yet
        (etcd.EtcdMemberRef(name=CP3), UNSTARTED, False),
        (etcd.EtcdMemberRef(name="x", peer_host="10.0.3.3"), MEMBERS[2], False),  # not a prefix match
    ],
)
def test_matches(ref: etcd.EtcdMemberRef, line: str, expected: bool) -> None:
    member = etcd.parse_member_line(line)
    assert member is not None and etcd.matches(member, ref) is expected


DEPARTING = etcd.EtcdMemberRef(name=CP3, peer_host="10.0.3.30")


@pytest.mark.parametrize(
    "status, stdout, expected",
    [
        ("Pending", "", "pending"),
        ("InProgress", "capt-etcd: members-before\n", "pending"),
        ("Delayed", "", "pending"),
        ("Failed", transcript(MEMBERS, MEMBERS[:2], ["fd422379fda50e48"]), "failed"),
        ("TimedOut", "", "failed"),
        ("Cancelled", "", "failed"),
        ("Success", transcript(MEMBERS, MEMBERS[:2], ["fd422379fda50e48"]), "removed"),
        ("Success", transcript(MEMBERS[:2], MEMBERS[:2]), "removed"),  # absent: nothing to remove
        ("Success", transcript(MEMBERS, MEMBERS), "still-present"),
        ("Success", "", "unknown"),  # moto: success, no output
        (
            "Success",
            transcript(MEMBERS, MEMBERS[:2], ["fd422379fda50e48"], done=False),
            "unknown",
        ),  # truncated
        ("Success", transcript(MEMBERS, [], ["fd422379fda50e48"]), "unknown"),  # no member left to ask
        ("Success", "capt-etcd: members-after\ngarbage\ncapt-etcd: done\n", "unknown"),
    ],
)
def test_removal_state(status: str, stdout: str, expected: str) -> None:
    assert etcd.removal_state(status, stdout, DEPARTING)[0] == expected


@pytest.mark.parametrize(
    "status, stdout, expected, count",
    [
        ("Success", "capt-etcd: members\n" + "\n".join(MEMBERS) + "\ncapt-etcd: done\n", "listed", 3),
        ("Success", "capt-etcd: members\n" + "\n".join(MEMBERS), "unknown", 3),
        ("Success", "", "unknown", 0),
        ("InProgress", "", "pending", 0),
        ("Failed", "", "failed", 0),
    ],
)
def test_list_state(status: str, stdout: str, expected: str, count: int) -> None:
    state, members = etcd.list_state(status, stdout)
    assert (state, len(members)) == (expected, count)


@pytest.mark.parametrize(
    "ref",
    [
        etcd.EtcdMemberRef(name="node; rm -rf /"),
        etcd.EtcdMemberRef(name="$(reboot)"),
        etcd.EtcdMemberRef(name="Upper.Case"),
        etcd.EtcdMemberRef(name="ok", peer_host="10.0.0.1 --all"),
    ],
)
def test_removal_script_refuses_unsafe_names(ref: etcd.EtcdMemberRef) -> None:
    with pytest.raises(etcd.EtcdRequestError):
        etcd.removal_script(ref)


# --------------------------------------------------------------------------------------------
# the script, run with sh against a fake etcdctl

FAKE_ETCD = r"""#!/bin/sh
# A fake etcdctl: `member list -w simple` and `member remove <id>` on the file $FAKE_ETCD_STATE.
echo "$*" >> "$FAKE_ETCD_LOG"
if [ -n "${FAKE_ETCD_FAIL:-}" ]; then echo "Error: context deadline exceeded" >&2; exit 1; fi
args=""
while [ $# -gt 0 ]; do
  case "$1" in
    -w) shift 2 ;;
    --*) shift ;;
    *) args="$args $1"; shift ;;
  esac
done
set -- $args
case "$1 $2" in
  "member list") cat "$FAKE_ETCD_STATE" ;;
  "member remove")
    grep -q "^$3, " "$FAKE_ETCD_STATE" || { echo "Error: etcdserver: member not found" >&2; exit 1; }
    grep -v "^$3, " "$FAKE_ETCD_STATE" > "$FAKE_ETCD_STATE.new" || true
    mv "$FAKE_ETCD_STATE.new" "$FAKE_ETCD_STATE"
    echo "Member $3 removed from cluster cdf818194e3a8c32" ;;
  *) echo "unexpected etcdctl call: $*" >&2; exit 2 ;;
esac
"""

FAKE_CRICTL = r"""#!/bin/sh
# A fake crictl: `ps ... --name ^etcd$` prints a container id; `exec <id> etcdctl ...` runs the fake.
echo "crictl $*" >> "$FAKE_ETCD_LOG"
case "$1" in
  ps) echo "3f2a9c0d1e4b" ;;
  exec) [ "$2" = "3f2a9c0d1e4b" ] || exit 1; shift 3; exec "$FAKE_ETCD_BIN" "$@" ;;
esac
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class Node:
    """A control-plane node's shell: a bin dir on PATH and an etcd member list in a file."""

    def __init__(self, tmp: Path, members: list[str], *, with_etcdctl: bool = True) -> None:
        self.state, self.log = tmp / "members", tmp / "calls.log"
        self.state.write_text("\n".join(members) + "\n")
        self.log.write_text("")
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        fake = _executable(tmp / "fake-etcdctl", FAKE_ETCD)
        if with_etcdctl:
            _executable(bin_dir / "etcdctl", FAKE_ETCD)
        else:
            _executable(bin_dir / "crictl", FAKE_CRICTL)
        self.env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FAKE_ETCD_STATE": str(self.state),
            "FAKE_ETCD_LOG": str(self.log),
            "FAKE_ETCD_BIN": str(fake),
        }

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-c", script],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    def members(self) -> list[str]:
        return [line for line in self.state.read_text().splitlines() if line]


def test_script_removes_the_member_by_name(tmp_path: Path) -> None:
    node = Node(tmp_path, MEMBERS)
    done = node.run(etcd.removal_script(DEPARTING))
    assert done.returncode == 0, done.stderr
    assert node.members() == MEMBERS[:2]
    assert etcd.removal_state("Success", done.stdout, DEPARTING)[0] == "removed"
    t = etcd.parse_transcript(done.stdout)
    assert t.removed_ids == ("fd422379fda50e48",) and len(t.sections["members-before"]) == 3
    # etcdctl was called with kubeadm's etcd CA and client certificate, on the local member.
    calls = node.log.read_text().splitlines()
    assert calls[0].split() == [
        "--endpoints=https://127.0.0.1:2379",
        "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
        "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "--command-timeout=15s",
        "member",
        "list",
        "-w",
        "simple",
    ]
    assert [c.split()[-2:] for c in calls] == [
        ["-w", "simple"],
        ["remove", "fd422379fda50e48"],
        ["-w", "simple"],
    ]

    # Again (a retried command): nothing to remove, and still confirmed.
    again = node.run(etcd.removal_script(DEPARTING))
    assert again.returncode == 0 and "capt-etcd: absent" in again.stdout
    assert etcd.removal_state("Success", again.stdout, DEPARTING)[0] == "removed"


def test_script_removes_an_unstarted_member_by_peer_host_and_nothing_else(tmp_path: Path) -> None:
    node = Node(tmp_path, [*MEMBERS, UNSTARTED])
    ref = etcd.EtcdMemberRef(name="ip-10-0-3-31.ap-northeast-2.compute.internal", peer_host="10.0.3.31")
    done = node.run(etcd.removal_script(ref))
    assert done.returncode == 0, done.stderr
    assert node.members() == MEMBERS
    assert etcd.removal_state("Success", done.stdout, ref)[0] == "removed"


def test_script_does_not_remove_a_member_whose_name_merely_starts_alike(tmp_path: Path) -> None:
    node = Node(tmp_path, MEMBERS)
    ref = etcd.EtcdMemberRef(name="ip-10-0-3-3.ap-northeast-2.compute.internal", peer_host="10.0.3.3")
    done = node.run(etcd.removal_script(ref))
    assert done.returncode == 0 and node.members() == MEMBERS
    assert "capt-etcd: absent" in done.stdout


def test_script_uses_etcdctl_in_the_etcd_container_without_a_host_etcdctl(tmp_path: Path) -> None:
    node = Node(tmp_path, MEMBERS, with_etcdctl=False)
    done = node.run(etcd.removal_script(DEPARTING))
    assert done.returncode == 0, done.stderr
    assert node.members() == MEMBERS[:2]
    log = node.log.read_text()
    assert "crictl ps --quiet --state running --name ^etcd$" in log
    assert "crictl exec 3f2a9c0d1e4b etcdctl --endpoints=https://127.0.0.1:2379" in log


def test_script_fails_when_etcdctl_fails(tmp_path: Path) -> None:
    node = Node(tmp_path, MEMBERS)
    failed = node.run(etcd.removal_script(DEPARTING), FAKE_ETCD_FAIL="1")
    assert failed.returncode != 0 and "context deadline exceeded" in failed.stderr
    assert "capt-etcd: done" not in failed.stdout and node.members() == MEMBERS


def test_list_script(tmp_path: Path) -> None:
    node = Node(tmp_path, MEMBERS)
    done = node.run(etcd.list_script())
    state, members = etcd.list_state("Success", done.stdout)
    assert state == "listed" and [m.name for m in members] == [CP1, CP2, CP3]


# --------------------------------------------------------------------------------------------
# the activities against moto's SSM


def _ssm_command(command_id: str):
    return ssm_backends[DEFAULT_ACCOUNT_ID][REGION].get_command_by_id(command_id)


def _set_invocation(command_id: str, status: str, stdout: str = "", stderr: str = "") -> None:
    """Make moto answer GetCommandInvocation as an instance that ran the command would."""
    inv = _ssm_command(command_id).invocations[0]
    inv.update(Status=status, StatusDetails=status, StandardOutputContent=stdout, StandardErrorContent=stderr)


def _script_sent(command_id: str) -> str:
    return "\n".join(_ssm_command(command_id).parameters["commands"])


REQ = etcd.EtcdMemberRemovalRequest(
    region=REGION,
    via_instance_id="i-0aaaaaaaaaaaaaaa1",
    departing_instance_id="i-0ccccccccccccccc3",
    member=DEPARTING,
)


def _check(ref: etcd.SsmCommandRef, member: etcd.EtcdMemberRef = DEPARTING) -> etcd.EtcdMemberRemovalStatus:
    return ActivityEnvironment().run(
        etcd.check_etcd_member_removal,
        etcd.EtcdMemberRemovalCheck(
            region=REGION, command_id=ref.command_id, instance_id=ref.instance_id, member=member
        ),
    )


def test_send_runs_the_removal_script_on_the_healthy_instance(aws: None) -> None:
    ref = ActivityEnvironment().run(etcd.send_etcd_member_removal, REQ)
    assert ref.instance_id == "i-0aaaaaaaaaaaaaaa1" and ref.aws_calls == {"ssm:SendCommand": 1}
    listed = boto3.client("ssm", region_name=REGION).list_commands(CommandId=ref.command_id)["Commands"][0]
    assert listed["DocumentName"] == "AWS-RunShellScript"
    assert listed["InstanceIds"] == ["i-0aaaaaaaaaaaaaaa1"]
    assert listed["Parameters"]["executionTimeout"] == ["120"]
    assert listed["Comment"] == f"capt: remove etcd member {CP3}"
    assert _script_sent(ref.command_id) == etcd.removal_script(DEPARTING).rstrip("\n")


def test_moto_success_without_output_is_unknown_not_confirmed(aws: None) -> None:
    ref = ActivityEnvironment().run(etcd.send_etcd_member_removal, REQ)
    status = _check(ref)
    assert (status.state, status.confirmed) == ("unknown", False)
    assert "not confirmed" in status.detail


def test_send_check_chain_with_the_scripts_real_transcript(aws: None, tmp_path: Path) -> None:
    ref = ActivityEnvironment().run(etcd.send_etcd_member_removal, REQ)
    _set_invocation(ref.command_id, "InProgress")
    assert _check(ref).state == "pending"
    node = Node(tmp_path, MEMBERS)
    ran = node.run(_script_sent(ref.command_id))  # what the instance runs: exactly what was sent
    _set_invocation(ref.command_id, "Success", ran.stdout, ran.stderr)
    status = _check(ref)
    assert (status.state, status.confirmed) == ("removed", True)
    assert [m.name for m in status.members] == [CP1, CP2]
    assert status.aws_calls == {"ssm:GetCommandInvocation": 1}
    # As the workflow receives it, through the pydantic converter.
    conv = pydantic_data_converter.payload_converter
    ret_type = activity._Definition.from_callable(etcd.check_etcd_member_removal).ret_type
    assert conv.from_payloads(conv.to_payloads([status]), [ret_type]) == [status]


def test_failed_command_reports_stderr(aws: None, tmp_path: Path) -> None:
    ref = ActivityEnvironment().run(etcd.send_etcd_member_removal, REQ)
    ran = Node(tmp_path, MEMBERS).run(_script_sent(ref.command_id), FAKE_ETCD_FAIL="1")
    _set_invocation(ref.command_id, "Failed", ran.stdout, ran.stderr)
    status = _check(ref)
    assert (status.state, status.confirmed) == ("failed", False)
    assert "Failed" in status.detail and "context deadline exceeded" in status.detail


def test_an_invocation_not_yet_visible_is_pending(aws: None) -> None:
    real = ActivityEnvironment().run(etcd.send_etcd_member_removal, REQ)
    # GetCommandInvocation answers InvocationDoesNotExist for an instance without the invocation
    # (AWS does so right after SendCommand, before delivery): keep waiting, not an error.
    other_instance = etcd.SsmCommandRef(command_id=real.command_id, instance_id="i-0ddddddddddddddd4")
    assert _check(other_instance).state == "pending"


def test_refuses_to_run_on_the_departing_instance(aws: None) -> None:
    req = REQ.model_copy(update={"via_instance_id": REQ.departing_instance_id})
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(etcd.send_etcd_member_removal, req)
    assert err.value.non_retryable and "another control-plane instance" in err.value.message
    assert not ssm_backends[DEFAULT_ACCOUNT_ID][REGION]._commands


def test_member_list_activities(aws: None, tmp_path: Path) -> None:
    env = ActivityEnvironment()
    ref = env.run(
        etcd.send_etcd_member_list,
        etcd.EtcdMemberListRequest(region=REGION, via_instance_id="i-0aaaaaaaaaaaaaaa1"),
    )
    check = etcd.EtcdMemberListCheck(region=REGION, command_id=ref.command_id, instance_id=ref.instance_id)
    assert env.run(etcd.check_etcd_member_list, check).state == "unknown"  # moto's empty output
    ran = Node(tmp_path, [*MEMBERS, UNSTARTED]).run(_script_sent(ref.command_id))
    _set_invocation(ref.command_id, "Success", ran.stdout)
    listed = env.run(etcd.check_etcd_member_list, check)
    assert listed.state == "listed" and [m.started for m in listed.members] == [True, True, True, False]
