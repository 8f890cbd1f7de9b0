"""`capt bootstrap iam`: the worker policy is exactly what the code calls; roles, policies and
instance profiles are created once and converge.

The worker-policy check derives the AWS actions from the source: every method call on a boto3
client in activities/**.py and capt/worker.py (including paginators and waiters) is mapped to its
IAM action through botocore's service model (operation name, signing name). A call the scan
cannot attribute to one service fails the test instead of being skipped, so a new AWS call —
in a new module too — cannot slip past the policy.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import botocore.session
import pytest
from botocore import xform_name
from click.testing import CliRunner

from capt.activities.aws import iam, iam_bootstrap, iam_worker_policy, session
from capt.activities.aws.errors import ConflictError
from capt.cli.iam import bootstrap_group
from tests.support.paths import ROOT

# Run with an operator's (or a test's) credentials, never by the worker: bootstrap IAM, and the
# account audit (capt/activities/aws/audit.py) that the chaos suite and the deletion tests use.
OPERATOR_ONLY = {
    "capt/activities/aws/iam.py",
    "capt/activities/aws/iam_bootstrap.py",
    "capt/activities/aws/iam_worker_policy.py",
    "capt/activities/aws/audit.py",
    "capt/activities/aws/audit_compare.py",
}
# IAM action prefixes that differ from the service's signing name.
IAM_PREFIX = {"tagging": "tag"}
# Calls whose method name is also an AWS operation but whose receiver is not a boto3 client:
# (file, receiver, method). Add an entry only after checking the receiver.
NOT_AWS_CALLS = {
    ("capt/activities/workload/activities.py", "client", "list_nodes"),  # the Kubernetes API client
}
PAGINATOR_METHODS = ("get_paginator", "can_paginate")


# --------------------------------------------------------------------------------------------
# the scanner


class ScanError(AssertionError):
    pass


@functools.cache
def _botocore() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def _available() -> frozenset[str]:
    return frozenset(_botocore().get_available_services())


@functools.cache
def _ops(service: str) -> dict[str, str]:
    """python method name -> IAM action."""
    model = _botocore().get_service_model(service)
    prefix = IAM_PREFIX.get(model.signing_name, model.signing_name)
    return {xform_name(op): f"{prefix}:{op}" for op in model.operation_names}


@functools.cache
def _waiters(service: str) -> dict[str, str]:
    """python waiter name -> IAM action of the operation it polls."""
    try:
        model = _botocore().get_waiter_model(service)
    except Exception:
        return {}
    return {
        xform_name(w): f"{_ops(service)[xform_name(model.get_waiter(w).operation)]}"
        for w in model.waiter_names
    }


@dataclass
class FileScan:
    path: str
    tree: ast.Module
    module: str
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> module (or module.attr)
    factories: dict[str, str] = field(default_factory=dict)  # local function name -> service


def _module_name(rel: str) -> str:
    return rel.removesuffix(".py").replace("/", ".")


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _callee_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


class Scanner:
    """Static map from source to the IAM actions its boto3 calls need."""

    def __init__(self, sources: dict[str, str]):
        self.files = {}
        for rel, text in sources.items():
            scan = FileScan(rel, ast.parse(text), _module_name(rel))
            for node in ast.walk(scan.tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        scan.aliases[(a.asname or a.name).split(".")[0]] = (
                            a.name if a.asname else a.name.split(".")[0]
                        )
                elif isinstance(node, ast.ImportFrom) and node.module:
                    for a in node.names:
                        scan.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            self.files[rel] = scan
        # Functions that return a client of a fixed service (`def _client(r): return client("ssm", r)`),
        # found to a fixed point so factories of factories resolve too.
        changed = True
        while changed:
            changed = False
            for scan in self.files.values():
                for fn in (
                    n for n in ast.walk(scan.tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                ):
                    if fn.name in scan.factories:
                        continue
                    for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None):
                        service = self.client_service(scan, ret.value)
                        if service:
                            scan.factories[fn.name] = service
                            changed = True
                            break
        self.used_services = {s for scan in self.files.values() for s in self.created_services(scan)}
        for scan in self.files.values():
            for node in ast.walk(scan.tree):
                if (
                    isinstance(node, ast.Call)
                    and _callee_name(node) == "resource"
                    and node.args
                    and _literal(node.args[0]) in _available()
                ):
                    raise ScanError(
                        f"{scan.path}:{node.lineno}: boto3 resources hide their API calls from the policy "
                        "scan; use a client"
                    )

    # -- what is a client -----------------------------------------------------------------------

    def _factory_service(self, scan: FileScan, call: ast.Call) -> str | None:
        f = call.func
        if isinstance(f, ast.Name) and f.id in scan.factories:
            return scan.factories[f.id]
        target = None
        if isinstance(f, ast.Name) and f.id in scan.aliases:
            target = scan.aliases[f.id]
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in scan.aliases:
            target = f"{scan.aliases[f.value.id]}.{f.attr}"
        if target:
            module, _, name = target.rpartition(".")
            other = next((s for s in self.files.values() if s.module == module), None)
            if other and name in other.factories:
                return other.factories[name]
        return None

    def client_service(self, scan: FileScan, node: ast.AST) -> str | None:
        if isinstance(node, ast.Await):
            node = node.value
        if isinstance(node, ast.Call):
            if _callee_name(node).endswith("client"):
                arg = (
                    node.args[0]
                    if node.args
                    else next((k.value for k in node.keywords if k.arg in ("service", "service_name")), None)
                )
                service = _literal(arg)
                if service in _available():
                    return service
            return self._factory_service(scan, node)
        return None

    def created_services(self, scan: FileScan) -> set[str]:
        found = set(scan.factories.values())
        for node in ast.walk(scan.tree):
            if isinstance(node, ast.Call):
                service = self.client_service(scan, node)
                if service:
                    found.add(service)
        return found

    def _bindings(self, scan: FileScan, scope: ast.AST) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for node in ast.walk(scope):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                service = self.client_service(scan, node.value)
                if service:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        out.setdefault(ast.unparse(t), set()).add(service)
        return out

    # -- the calls -------------------------------------------------------------------------------

    def actions(self) -> dict[str, set[tuple[str, int]]]:
        """IAM action -> where it is called ((file, line), ...)."""
        found: dict[str, set[tuple[str, int]]] = {}
        for scan in self.files.values():
            file_bindings = self._bindings(scan, scan.tree)
            here = self.created_services(scan)
            scopes = [
                n
                for n in scan.tree.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            ]
            called_funcs = {id(n.func) for n in ast.walk(scan.tree) if isinstance(n, ast.Call)}
            for node, scope in self._nodes(scan.tree, scopes):
                if isinstance(node, ast.Call):
                    actions = self._call_actions(scan, node, scope, file_bindings, here)
                elif isinstance(node, ast.Attribute) and id(node) not in called_funcs:
                    # A client method passed around uncalled (`fn = ec2.describe_instances`).
                    services = self._receiver_services(scan, node.value, scope, file_bindings)
                    actions = {_ops(s)[node.attr] for s in services if node.attr in _ops(s)}
                else:
                    continue
                for action in actions:
                    found.setdefault(action, set()).add((scan.path, node.lineno))
        return found

    @staticmethod
    def _nodes(tree: ast.Module, scopes: list[ast.AST]) -> Iterator[tuple[ast.AST, ast.AST]]:
        """Every call and attribute, with the top-level definition it sits in (or the module)."""
        seen = set()
        for scope in scopes:
            for node in ast.walk(scope):
                if isinstance(node, (ast.Call, ast.Attribute)):
                    seen.add(id(node))
                    yield node, scope
        for node in ast.walk(tree):
            if isinstance(node, (ast.Call, ast.Attribute)) and id(node) not in seen:
                yield node, tree

    def _receiver_services(
        self, scan: FileScan, receiver: ast.AST, scope: ast.AST, file_bindings: dict[str, set[str]]
    ) -> set[str]:
        direct = self.client_service(scan, receiver)
        if direct:
            return {direct}
        text = ast.unparse(receiver)
        return self._bindings(scan, scope).get(text) or file_bindings.get(text) or set()

    def _call_actions(
        self,
        scan: FileScan,
        call: ast.Call,
        scope: ast.AST,
        file_bindings: dict[str, set[str]],
        here: set[str],
    ) -> set[str]:
        if isinstance(call.func, ast.Attribute):
            receiver, method, args = call.func.value, call.func.attr, call.args
        elif isinstance(call.func, ast.Name) and call.func.id == "getattr" and len(call.args) >= 2:
            method = _literal(call.args[1])
            if method is None:
                return set()
            receiver, args = call.args[0], []
        else:
            return set()
        if isinstance(receiver, ast.Name) and receiver.id in scan.aliases:
            return set()  # a module function, not a client method

        # Which services could the receiver be?
        services = self._receiver_services(scan, receiver, scope, file_bindings)

        # Which operations does the call make?
        if method in PAGINATOR_METHODS or method == "get_waiter":
            if not args:
                return set()
            names = [_literal(args[0])] if _literal(args[0]) else self._literals(scope)
            table = _waiters if method == "get_waiter" else _ops
            if not services:
                services = {s for s in here if any(n in table(s) for n in names)}
            if not services and _literal(args[0]):
                raise ScanError(
                    f"{scan.path}:{call.lineno}: {method}({names[0]!r}) on a client the scan cannot place"
                )
            return {table(s)[n] for s in services for n in names if n in table(s)}

        if services:
            return {_ops(s)[method] for s in services if method in _ops(s)}
        candidates = {_ops(s)[method] for s in here if method in _ops(s)}
        if len(candidates) == 1:
            return candidates
        if len(candidates) > 1:
            raise ScanError(
                f"{scan.path}:{call.lineno}: {ast.unparse(receiver)}.{method}() could be any of {sorted(candidates)}; "
                "assign the client to a variable from client('<service>') in the same function"
            )
        if any(method in _ops(s) for s in self.used_services):
            if (scan.path, ast.unparse(receiver), method) in NOT_AWS_CALLS:
                return set()
            raise ScanError(
                f"{scan.path}:{call.lineno}: {ast.unparse(receiver)}.{method}() looks like an AWS call but this file "
                "creates no client of that service; create the client here, or list it in NOT_AWS_CALLS"
            )
        return set()

    @staticmethod
    def _literals(scope: ast.AST) -> list[str]:
        return sorted({n.value for n in ast.walk(scope) if _literal(n)})


def scan_sources(sources: dict[str, str]) -> dict[str, set[tuple[str, int]]]:
    return Scanner(sources).actions()


def worker_sources() -> dict[str, str]:
    paths = sorted((ROOT / "capt" / "activities").rglob("*.py")) + [ROOT / "capt" / "worker.py"]
    out = {}
    for p in paths:
        rel = p.relative_to(ROOT).as_posix()
        if rel not in OPERATOR_ONLY and p.exists():
            out[rel] = p.read_text()
    return out


# --------------------------------------------------------------------------------------------
# the worker policy is exactly what the code calls


def test_worker_policy_is_exactly_the_actions_the_code_calls() -> None:
    called = scan_sources(worker_sources())
    assert {"ec2:RunInstances", "ec2:DescribeInstances", "secretsmanager:CreateSecret"} <= set(called)
    expected = set(called) | iam_worker_policy.implied_by(called)
    policy = iam_worker_policy.policy_actions(iam_worker_policy.worker_policy())
    missing = sorted(expected - policy)
    extra = sorted(policy - expected)
    where = {a: sorted(called.get(a, ()))[:2] for a in missing}
    assert not missing, f"called but not in iam_worker_policy.WORKER_ACTIONS: {where}"
    assert not extra, f"in iam_worker_policy.WORKER_ACTIONS but never called (remove them): {extra}"


def test_worker_actions_list_is_sorted_and_unique() -> None:
    assert list(iam_worker_policy.WORKER_ACTIONS) == sorted(set(iam_worker_policy.WORKER_ACTIONS))
    assert iam_worker_policy.policy_actions(iam_worker_policy.worker_policy()) == set(
        iam_worker_policy.WORKER_ACTIONS
    )


def test_no_operator_only_code_runs_in_the_worker() -> None:
    from capt.activities.registry import ACTIVITIES

    for fn in ACTIVITIES:
        module = getattr(fn, "__module__", "")
        assert module not in {_module_name(p) for p in OPERATOR_ONLY}, f"{fn} is IAM bootstrap code"


def _grants(policy: dict) -> dict[str, set[tuple[str, str]]]:
    """action -> {(resource, condition as JSON)} the document allows it on."""
    out: dict[str, set[tuple[str, str]]] = {}
    for st in policy["Statement"]:
        cond = json.dumps(st.get("Condition"), sort_keys=True)
        for action in st["Action"]:
            out.setdefault(action, set()).update((r, cond) for r in st["Resource"])
    return out


def test_every_mutating_worker_action_is_scoped_or_says_why() -> None:
    allowed = _grants(iam_worker_policy.worker_policy())
    for action in iam_worker_policy.WORKER_ACTIONS:
        grants = iam_worker_policy.worker_scope(action)
        for g in grants:
            # The document allows at least what the table says ...
            assert {(r, json.dumps(g.condition, sort_keys=True)) for r in g.resources} <= allowed[action]
        if not iam_worker_policy.is_mutating(action):
            continue
        for g in grants:
            # ... and a mutating action is never on "*" without a condition, and never without a reason.
            assert not (g.resources == ("*",) and g.condition is None), action
            assert g.condition is not None or g.why, f"{action}: unconditioned without a reason"
        # Unconditioned, the document allows a mutating action on exactly the table's resources.
        unconditioned = {r for r, c in allowed[action] if c == "null"}
        assert unconditioned == {r for g in grants if g.condition is None for r in g.resources}, action


def test_creates_must_tag_and_changes_need_capts_tag() -> None:
    request_tag = json.dumps(iam_worker_policy.TAGGED_ON_CREATE, sort_keys=True)
    resource_tag = json.dumps(iam_worker_policy.CAPT_TAGGED, sort_keys=True)
    allowed = _grants(iam_worker_policy.worker_policy())
    for create in [f"ec2:{a}" for a in iam_worker_policy.EC2_CREATE_ACTIONS] + [
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
    ]:
        assert any(c == request_tag for _, c in allowed[create]), create
    for change in (
        "ec2:TerminateInstances",
        "ec2:DeleteVpc",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:DeleteSubnet",
    ):
        assert {c for _, c in allowed[change]} == {resource_tag}, change
    tagging = {c for _, c in allowed["ec2:CreateTags"]}
    assert tagging == {
        json.dumps(iam_worker_policy.ON_CREATE_ONLY, sort_keys=True)
    }  # never on existing resources


def test_secrets_run_command_and_pass_role_are_narrow() -> None:
    allowed = _grants(iam_worker_policy.worker_policy())
    for action in iam_worker_policy.WORKER_ACTIONS:
        if action.startswith("secretsmanager:") and action != "secretsmanager:ListSecrets":
            assert {r for r, _ in allowed[action]} == {"arn:*:secretsmanager:*:*:secret:capt/*"}, action
    # (A statement's resources are the union of its grants'; SendCommand only ever authorizes a
    # document and instances, so those are what matter.)
    run_command = {(r, c) for r, c in allowed["ssm:SendCommand"] if ":document/" in r or ":instance/" in r}
    assert ("*", "null") not in allowed["ssm:SendCommand"]
    assert run_command == {
        ("arn:*:ssm:*::document/AWS-RunShellScript", "null"),
        ("arn:*:ec2:*:*:instance/*", json.dumps(iam_worker_policy.CAPT_TAGGED, sort_keys=True)),
    }
    assert allowed["iam:PassRole"] == {
        (iam.role_arn(role), json.dumps({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}))
        for role in (iam.CONTROL_PLANE, iam.NODES)
    }


def test_docs_iam_md_is_the_policy_table() -> None:
    text = (ROOT / "docs" / "iam.md").read_text()
    assert iam_worker_policy.worker_policy_table() in text, (
        "docs/iam.md's worker table is stale: regenerate it"
    )
    assert iam_worker_policy.machine_policy_table() in text, (
        "docs/iam.md's machine table is stale: regenerate it"
    )
    # Every worker action has a row; every "*" grant of a mutating action would show there.
    for action in iam_worker_policy.WORKER_ACTIONS:
        assert f"| `{action}` |" in text, action


# --------------------------------------------------------------------------------------------
# the scanner catches new calls (it would fail the test above)


def _scan(code: str, path: str = "capt/activities/aws/new_thing.py") -> set[str]:
    return set(
        scan_sources(
            {
                path: code,
                "capt/activities/aws/session.py": (ROOT / "capt/activities/aws/session.py").read_text(),
            }
        )
    )


def test_scanner_sees_a_new_call_in_a_new_module() -> None:
    code = """
from capt.activities.aws import session

def ensure_key(name):
    ec2 = session.client("ec2")
    ec2.create_key_pair(KeyName=name)
    for page in ec2.get_paginator("describe_key_pairs").paginate():
        pass
    ec2.get_waiter("key_pair_exists").wait(KeyNames=[name])
"""
    assert _scan(code) == {"ec2:CreateKeyPair", "ec2:DescribeKeyPairs"}


def test_scanner_follows_factories_parameters_and_dynamic_paginators() -> None:
    code = """
from capt.activities.aws.session import client

def _ssm(region):
    return client("ssm", region)

def run(region, instance):
    _ssm(region).send_command(InstanceIds=[instance], DocumentName="AWS-RunShellScript")

def helper(sm, name):
    return sm.describe_secret(SecretId=name)

def make():
    return client("secretsmanager")

def sweep(region):
    ec2 = client("ec2", region)
    elb = client("elb", region)
    def pages(op):
        return list(ec2.get_paginator(op).paginate())
    pages("describe_vpcs")
    pages("describe_subnets")
    elb.describe_tags(LoadBalancerNames=["x"])
    getattr(ec2, "delete_vpc")(VpcId="vpc-1")
"""
    assert _scan(code) == {
        "ssm:SendCommand",
        "secretsmanager:DescribeSecret",
        "ec2:DescribeVpcs",
        "ec2:DescribeSubnets",
        "elasticloadbalancing:DescribeTags",
        "ec2:DeleteVpc",
    }


def test_scanner_sees_uncalled_method_references_and_async_factories() -> None:
    code = """
from capt.activities.aws.session import client

async def _elb(region):
    return client(service="elbv2", region=region)

class Thing:
    def __init__(self):
        self.ec2 = client("ec2")

    def later(self):
        describe = self.ec2.describe_instances
        return describe(InstanceIds=["i-1"])

async def go(region):
    (await _elb(region)).register_targets(TargetGroupArn="a", Targets=[])
"""
    assert _scan(code) == {"ec2:DescribeInstances", "elasticloadbalancing:RegisterTargets"}


def test_scanner_refuses_boto3_resources() -> None:
    with pytest.raises(ScanError, match="resources"):
        _scan("import boto3\nboto3.resource('ec2').Instance('i-1').terminate()\n")


def test_scanner_refuses_what_it_cannot_attribute() -> None:
    ambiguous = """
from capt.activities.aws.session import client

def a():
    return client("ec2")

def b():
    return client("elb")

def tags_of(c):
    return c.describe_tags()
"""
    with pytest.raises(ScanError, match="could be any of"):
        _scan(ambiguous)
    elsewhere = """
def list_them(c):
    return c.list_secrets()
"""
    with pytest.raises(ScanError, match="creates no client"):
        scan_sources(
            {
                "capt/activities/aws/x.py": elsewhere,
                "capt/activities/aws/y.py": "import boto3\nboto3.client('secretsmanager')\n",
            }
        )


# --------------------------------------------------------------------------------------------
# machine policies


def test_node_policy_reads_only_bootstrap_secrets_and_runs_ssm_agent() -> None:
    from capt.activities.aws import secrets

    statements = {s["Sid"]: s for s in iam.nodes_policy()["Statement"]}
    assert statements["BootstrapData"]["Resource"] == [
        f"arn:*:secretsmanager:*:*:secret:{secrets.NODE_READABLE_SECRET_PATTERN}"
    ]
    assert statements["BootstrapData"]["Action"] == [
        "secretsmanager:DeleteSecret",
        "secretsmanager:GetSecretValue",
    ]
    everything = iam_worker_policy.policy_actions(iam.nodes_policy())
    assert "secretsmanager:ListSecrets" not in everything
    assert {
        "ssm:UpdateInstanceInformation",
        "ssmmessages:OpenControlChannel",
        "ec2messages:GetMessages",
    } <= everything
    assert {"ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ec2:DescribeInstances"} <= everything
    assert not any(a.startswith(("iam:", "ec2:Run", "ec2:Terminate")) for a in everything)


# --------------------------------------------------------------------------------------------
# bootstrap against moto


@pytest.fixture
def iam_client(aws: None):
    return session.client("iam")


def _by(result: iam_bootstrap.BootstrapIamResult) -> dict[tuple[str, str], str]:
    return {(c.kind, c.name): c.action for c in result.changes}


def test_bootstrap_iam_creates_everything_once(iam_client) -> None:
    first = iam_bootstrap.bootstrap_iam(iam_client)
    assert first.changed and all(c.action == "created" for c in first.changes)
    second = iam_bootstrap.bootstrap_iam(iam_client)
    assert not second.changed
    assert set(_by(second)) == set(_by(first))

    roles = [r["RoleName"] for r in iam_client.list_roles()["Roles"]]
    assert sorted(roles) == sorted([iam.CONTROL_PLANE, iam.NODES])
    profiles = {p["InstanceProfileName"]: p for p in iam_client.list_instance_profiles()["InstanceProfiles"]}
    assert set(profiles) == {iam.CONTROL_PLANE_PROFILE, iam.NODES_PROFILE}
    assert [r["RoleName"] for r in profiles[iam.CONTROL_PLANE_PROFILE]["Roles"]] == [iam.CONTROL_PLANE]
    assert [r["RoleName"] for r in profiles[iam.NODES_PROFILE]["Roles"]] == [iam.NODES]
    policies = [p["PolicyName"] for p in iam_client.list_policies(Scope="Local")["Policies"]]
    assert sorted(policies) == sorted([iam.CONTROL_PLANE, iam.NODES, iam.WORKER_POLICY])

    def attached(role: str) -> set[str]:
        return {
            p["PolicyName"] for p in iam_client.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        }

    assert attached(iam.CONTROL_PLANE) == {iam.CONTROL_PLANE, iam.NODES}
    assert attached(iam.NODES) == {iam.NODES}
    trust = iam_client.get_role(RoleName=iam.NODES)["Role"]["AssumeRolePolicyDocument"]
    assert iam_bootstrap._document(trust) == iam.EC2_TRUST
    assert first.worker_policy_arn.endswith(f":policy/{iam.WORKER_POLICY}")


def test_bootstrap_iam_repairs_drift(iam_client) -> None:
    first = iam_bootstrap.bootstrap_iam(iam_client)
    worker_arn = first.worker_policy_arn
    stale = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
    for _ in range(4):  # fill the policy's five versions
        iam_client.create_policy_version(
            PolicyArn=worker_arn, PolicyDocument=json.dumps(stale), SetAsDefault=True
        )
    lambda_trust = json.loads(json.dumps(iam.EC2_TRUST).replace("ec2.amazonaws.com", "lambda.amazonaws.com"))
    iam_client.update_assume_role_policy(RoleName=iam.NODES, PolicyDocument=json.dumps(lambda_trust))
    nodes_policy_arn = worker_arn.replace(iam.WORKER_POLICY, iam.NODES)
    iam_client.detach_role_policy(RoleName=iam.CONTROL_PLANE, PolicyArn=nodes_policy_arn)

    repaired = iam_bootstrap.bootstrap_iam(iam_client)
    actions = _by(repaired)
    assert actions[("policy", iam.WORKER_POLICY)] == "updated"
    assert actions[("role", iam.NODES)] == "updated"
    assert actions[("role-policy-attachment", f"{iam.CONTROL_PLANE} <- {iam.NODES}")] == "created"
    default = iam_client.get_policy(PolicyArn=worker_arn)["Policy"]["DefaultVersionId"]
    document = iam_client.get_policy_version(PolicyArn=worker_arn, VersionId=default)["PolicyVersion"][
        "Document"
    ]
    assert iam_bootstrap._document(document) == iam_worker_policy.worker_policy()
    assert not iam_bootstrap.bootstrap_iam(iam_client).changed


def test_bootstrap_iam_never_replaces_a_foreign_role_in_a_profile(iam_client) -> None:
    iam_client.create_role(RoleName="someone-elses", AssumeRolePolicyDocument=json.dumps(iam.EC2_TRUST))
    iam_client.create_instance_profile(InstanceProfileName=iam.NODES_PROFILE)
    iam_client.add_role_to_instance_profile(InstanceProfileName=iam.NODES_PROFILE, RoleName="someone-elses")
    with pytest.raises(ConflictError, match="someone-elses"):
        iam_bootstrap.bootstrap_iam(iam_client)


def test_cli_prints_the_worker_policy(aws: None) -> None:
    runner = CliRunner()
    offline = runner.invoke(bootstrap_group, ["iam", "--print-worker-policy"])
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout) == iam_worker_policy.worker_policy()

    created = runner.invoke(bootstrap_group, ["iam"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout) == iam_worker_policy.worker_policy()
    assert "created" in created.stderr
    again = runner.invoke(bootstrap_group, ["iam", "-o", "json"])
    assert again.exit_code == 0
    assert all(c["action"] == "unchanged" for c in json.loads(again.stdout)["changes"])


def test_policies_fit_iams_size_limit() -> None:
    # Customer managed policies: at most 6,144 characters, whitespace not counted.
    for spec in iam_bootstrap.policy_specs():
        assert len(json.dumps(spec.document, separators=(",", ":"))) <= 6144, spec.name
