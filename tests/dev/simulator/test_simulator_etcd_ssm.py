"""simulator.etcd and simulator.ssm: the etcd model answers capt's real SSM scripts, following the
output contract of capt/activities/workload/etcd.py, and boto3 talks to the SSM emulation."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from capt.activities.workload import etcd as we
from capt.dev.simulator.etcd import EtcdCluster, Member, ScriptResult, classify_script, run_script
from capt.dev.simulator.server import AdminServer, serve_in_thread
from capt.dev.simulator.ssm import SsmError, SsmService
from capt.dev.simulator.world.core import World


def three() -> tuple[EtcdCluster, list[Member]]:
    etcd = EtcdCluster()
    members = [etcd.add(f"ip-10-0-{i}-4.ec2.internal", f"10.0.{i}.4") for i in range(3)]
    return etcd, members


def lines(script: str) -> list[str]:
    return script.splitlines()


def test_member_lines_parse_with_the_workers_parser() -> None:
    etcd, members = three()
    parsed = [we.parse_member_line(line) for line in etcd.list_output().splitlines()]
    assert {p.name for p in parsed} == {m.name for m in members}
    assert {p.id for p in parsed} == {m.id for m in members}
    assert all(p.started and p.peer_urls[0].endswith(":2380") for p in parsed)
    with pytest.raises(ValueError, match="Peer URLs already exists"):
        etcd.add("another-name", "10.0.0.4")  # the peer URL of members[0]
    assert etcd.add(members[0].name, "10.9.9.9") is not members[0]  # etcd does not key on names


def test_scripts_are_recognised() -> None:
    ref = we.EtcdMemberRef(name="ip-10-0-1-4.ec2.internal", peer_host="10.0.1.4")
    assert classify_script(lines(we.list_script())) == ("list", {})
    assert classify_script(lines(we.removal_script(ref))) == (
        "remove",
        {"MEMBER_NAME": "ip-10-0-1-4.ec2.internal", "MEMBER_PEER_HOST": "10.0.1.4"},
    )
    assert classify_script(["echo hello"])[0] == "unknown"


def test_list_transcript_is_judged_listed() -> None:
    etcd, members = three()
    r = run_script(lines(we.list_script()), etcd=etcd, local_member=members[0], healthy=lambda m: True)
    state, listed = we.list_state(r.status, r.stdout)
    assert state == "listed" and {m.name for m in listed} == {m.name for m in members}


@pytest.mark.parametrize("by", ["name", "peer_host"])
def test_removal_is_confirmed_and_the_member_is_gone(by: str) -> None:
    etcd, members = three()
    gone = members[2]
    ref = (
        we.EtcdMemberRef(name=gone.name)
        if by == "name"
        else we.EtcdMemberRef(name="other-name", peer_host="10.0.2.4")
    )
    r = run_script(lines(we.removal_script(ref)), etcd=etcd, local_member=members[0], healthy=lambda m: True)
    state, after = we.removal_state(r.status, r.stdout, ref)
    assert state == "removed"
    assert gone.id not in etcd.members and len(after) == 2
    assert f"capt-etcd: removed {gone.id}" in r.stdout
    # Again: absent, and still confirmed from the surviving list.
    again = run_script(
        lines(we.removal_script(ref)), etcd=etcd, local_member=members[0], healthy=lambda m: True
    )
    assert "capt-etcd: absent" in again.stdout
    assert we.removal_state(again.status, again.stdout, ref)[0] == "removed"


def test_removal_without_quorum_fails_and_changes_nothing() -> None:
    etcd, members = three()
    healthy = {members[0].id}
    ref = we.EtcdMemberRef(name=members[2].name)
    r = run_script(
        lines(we.removal_script(ref)), etcd=etcd, local_member=members[0], healthy=lambda m: m.id in healthy
    )
    assert r.exit_code != 0 and "unhealthy cluster" in r.stderr
    assert we.removal_state(r.status, r.stdout, ref)[0] == "failed"
    assert len(etcd.members) == 3
    # With two of three healthy, the same removal goes through.
    healthy.add(members[1].id)
    r = run_script(
        lines(we.removal_script(ref)), etcd=etcd, local_member=members[0], healthy=lambda m: m.id in healthy
    )
    assert we.removal_state(r.status, r.stdout, ref)[0] == "removed"


def test_an_unhealthy_local_member_times_out_with_no_transcript() -> None:
    etcd, members = three()
    r = run_script(
        lines(we.list_script()), etcd=etcd, local_member=members[1], healthy=lambda m: m is not members[1]
    )
    assert (r.exit_code, r.stdout) == (1, "") and "deadline exceeded" in r.stderr
    assert we.list_state(r.status, r.stdout)[0] == "failed"


def test_a_node_without_etcd_says_so() -> None:
    r = run_script(lines(we.list_script()), etcd=None, local_member=None, healthy=lambda m: True)
    assert r.exit_code == 3 and "no running etcd container" in r.stderr


def test_quorum_counts_voters() -> None:
    etcd, members = three()
    assert etcd.has_quorum(lambda m: m is not members[0])
    assert not etcd.has_quorum(lambda m: m is members[0])
    assert not EtcdCluster().has_quorum(lambda m: True)


# --------------------------------------------------------------------------------------------
# SSM


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def service(clock: Clock, managed: set[str]) -> tuple[SsmService, list]:
    calls: list = []

    def runner(instance_id: str, commands: list[str]) -> ScriptResult:
        calls.append((instance_id, commands))
        return ScriptResult(0, "capt-etcd: members\ncapt-etcd: done\n")

    return SsmService(runner, lambda i: i in managed, delay=lambda: 1.0, clock=clock), calls


def test_command_runs_once_after_delivery() -> None:
    clock = Clock()
    ssm, calls = service(clock, {"i-1"})
    sent = ssm.handle(
        "AmazonSSM.SendCommand",
        {"InstanceIds": ["i-1"], "DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["echo"]}},
    )
    cid = sent["Command"]["CommandId"]
    first = ssm.handle("AmazonSSM.GetCommandInvocation", {"CommandId": cid, "InstanceId": "i-1"})
    assert first["Status"] == "InProgress" and calls == []
    clock.t += 1.0
    done = ssm.handle("AmazonSSM.GetCommandInvocation", {"CommandId": cid, "InstanceId": "i-1"})
    again = ssm.handle("AmazonSSM.GetCommandInvocation", {"CommandId": cid, "InstanceId": "i-1"})
    assert done["Status"] == again["Status"] == "Success" and done["ResponseCode"] == 0
    assert len(calls) == 1


@pytest.mark.parametrize(
    "body, code",
    [
        (
            {"InstanceIds": ["i-2"], "DocumentName": "AWS-RunShellScript", "Parameters": {"commands": ["x"]}},
            "InvalidInstanceId",
        ),
        (
            {
                "InstanceIds": ["i-1"],
                "DocumentName": "AWS-RunPowerShellScript",
                "Parameters": {"commands": ["x"]},
            },
            "InvalidDocument",
        ),
        (
            {"InstanceIds": ["i-1"], "DocumentName": "AWS-RunShellScript", "Parameters": {}},
            "InvalidParameters",
        ),
    ],
)
def test_send_command_errors(body: dict, code: str) -> None:
    ssm, _ = service(Clock(), {"i-1"})
    with pytest.raises(SsmError) as err:
        ssm.handle("AmazonSSM.SendCommand", body)
    assert err.value.code == code


def test_boto3_and_the_workers_etcd_helpers_against_the_ssm_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP, as the worker does it (AWS_ENDPOINT_URL_SSM): errors arrive as ClientErrors with
    AWS's codes; a command id not known yet reads as Pending."""
    world = World()
    world.settings.ssm_delay = 0.0
    server = AdminServer(("127.0.0.1", 0), world)
    serve_in_thread(server, "admin-test")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", url)
        from capt.activities.aws import session

        session.reset_clients()
        client = boto3.client("ssm", region_name="ap-northeast-2", endpoint_url=url)
        with pytest.raises(ClientError) as err:
            client.send_command(
                InstanceIds=["i-0123456789abcdef0"],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["true"]},
            )
        assert err.value.response["Error"]["Code"] == "InvalidInstanceId"
        assert (
            we.invocation("ap-northeast-2", "5f0c3c7e-0000-0000-0000-000000000000", "i-0123456789abcdef0")[0]
            == "Pending"
        )
        with pytest.raises(ClientError) as err:
            client.list_commands()
        assert err.value.response["Error"]["Code"] == "UnknownOperationException"
    finally:
        server.shutdown()
        server.server_close()
        from capt.activities.aws import session

        session.reset_clients()
