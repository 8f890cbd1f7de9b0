"""SSM Run Command, as much of it as boto3 needs for capt: SendCommand and GetCommandInvocation.

The AWS JSON 1.1 protocol: `POST /` with `X-Amz-Target: AmazonSSM.<Operation>` and a JSON body;
errors are HTTP 400 with `{"__type": "<Code>", "message": ...}`, which botocore turns into a
ClientError with that code. The worker reaches this through `AWS_ENDPOINT_URL_SSM`.

A command is delivered to each instance after a short delay (InProgress until then) and runs
when it is first looked at after that, against the simulated cluster at that moment. Only
instances whose node has booted (its SSM agent is "online") accept commands; others are
InvalidInstanceId, as for an instance that is not a managed node.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from capt.dev.simulator.etcd import ScriptResult

DOCUMENT = "AWS-RunShellScript"
PLUGIN = "aws:runShellScript"
# GetCommandInvocation returns at most this much of stdout (the rest is only in S3/CloudWatch).
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000

Runner = Callable[[str, list[str]], ScriptResult]


class SsmError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Invocation:
    instance_id: str
    due: float
    result: ScriptResult | None = None
    started: dt.datetime | None = None


@dataclass
class Command:
    command_id: str
    document: str
    comment: str
    commands: list[str]
    parameters: dict
    requested: dt.datetime
    timeout_seconds: int
    invocations: dict[str, Invocation] = field(default_factory=dict)


class SsmService:
    """Commands by id. Thread-safety is the caller's (the server holds the world's lock)."""

    def __init__(
        self,
        runner: Runner,
        is_managed: Callable[[str], bool],
        *,
        delay: Callable[[], float] = lambda: 1.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        keep: int = 1000,
    ) -> None:
        self.runner = runner
        self.is_managed = is_managed
        self.delay = delay
        self.clock = clock
        self.now = now
        self.keep = keep
        self.commands: dict[str, Command] = {}

    def handle(self, target: str, body: dict) -> dict:
        """One API call. Raises SsmError for AWS errors."""
        op = target.removeprefix("AmazonSSM.")
        if op == "SendCommand":
            return self.send_command(body)
        if op == "GetCommandInvocation":
            return self.get_command_invocation(body)
        raise SsmError(
            "UnknownOperationException", f"the simulator does not implement {target or 'this operation'}"
        )

    def send_command(self, body: dict) -> dict:
        document = str(body.get("DocumentName") or "")
        if document != DOCUMENT:
            raise SsmError("InvalidDocument", f"document {document!r} is not supported (only {DOCUMENT})")
        instance_ids = [str(i) for i in body.get("InstanceIds") or []]
        if not instance_ids:
            raise SsmError("InvalidInstanceId", "InstanceIds is required (targets are not supported)")
        unmanaged = [i for i in instance_ids if not self.is_managed(i)]
        if unmanaged:
            raise SsmError(
                "InvalidInstanceId",
                f"Instances {unmanaged} not in a valid state for account: not a managed node or not online",
            )
        params = dict(body.get("Parameters") or {})
        commands = [str(c) for c in params.get("commands") or []]
        if not commands:
            raise SsmError("InvalidParameters", "parameter commands is required")
        now, clock = self.now(), self.clock()
        cmd = Command(
            command_id=str(uuid.uuid4()),
            document=document,
            comment=str(body.get("Comment") or ""),
            commands=commands,
            parameters=params,
            requested=now,
            timeout_seconds=int(body.get("TimeoutSeconds") or 3600),
            invocations={i: Invocation(i, due=clock + self.delay()) for i in instance_ids},
        )
        self.commands[cmd.command_id] = cmd
        for old in list(itertools.islice(self.commands, max(0, len(self.commands) - self.keep))):
            del self.commands[old]
        return {
            "Command": {
                "CommandId": cmd.command_id,
                "DocumentName": document,
                "Comment": cmd.comment,
                "Parameters": params,
                "InstanceIds": instance_ids,
                "Targets": [],
                "RequestedDateTime": now.timestamp(),
                "Status": "Pending",
                "StatusDetails": "Pending",
                "TimeoutSeconds": cmd.timeout_seconds,
                "TargetCount": len(instance_ids),
                "CompletedCount": 0,
                "ErrorCount": 0,
            }
        }

    def get_command_invocation(self, body: dict) -> dict:
        command_id = str(body.get("CommandId") or "")
        instance_id = str(body.get("InstanceId") or "")
        cmd = self.commands.get(command_id)
        inv = cmd.invocations.get(instance_id) if cmd else None
        if cmd is None or inv is None:
            raise SsmError("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist)")
        out = {
            "CommandId": command_id,
            "InstanceId": instance_id,
            "Comment": cmd.comment,
            "DocumentName": cmd.document,
            "DocumentVersion": "$DEFAULT",
            "PluginName": PLUGIN,
            "ResponseCode": -1,
            "StandardOutputContent": "",
            "StandardErrorContent": "",
        }
        if inv.result is None and self.clock() < inv.due:
            return {**out, "Status": "InProgress", "StatusDetails": "InProgress"}
        if inv.result is None:
            inv.started = self.now()
            inv.result = self.runner(instance_id, cmd.commands)
        r = inv.result
        when = (inv.started or self.now()).timestamp()
        return {
            **out,
            "ResponseCode": r.exit_code,
            "Status": r.status,
            "StatusDetails": r.status,
            "ExecutionStartDateTime": dt.datetime.fromtimestamp(when, dt.UTC).isoformat(),
            "ExecutionEndDateTime": dt.datetime.fromtimestamp(when, dt.UTC).isoformat(),
            "StandardOutputContent": r.stdout[:STDOUT_LIMIT],
            "StandardErrorContent": r.stderr[:STDERR_LIMIT],
        }
