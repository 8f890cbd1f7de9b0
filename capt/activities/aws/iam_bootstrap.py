"""`capt bootstrap iam`: create or update, idempotently, the roles, policies and instance profiles
the machines and the worker need (an operator runs it once per account, never the worker)."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from capt.activities.aws.errors import ConflictError
from capt.activities.aws.iam import (
    CONTROL_PLANE,
    CONTROL_PLANE_PROFILE,
    EC2_TRUST,
    NODES,
    NODES_PROFILE,
    WORKER_POLICY,
    control_plane_policy,
    nodes_policy,
)
from capt.activities.aws.iam_worker_policy import worker_policy


@dataclass(frozen=True)
class PolicySpec:
    name: str
    description: str
    document: dict


@dataclass(frozen=True)
class RoleSpec:
    name: str
    description: str
    policies: tuple[str, ...]
    instance_profile: str


def policy_specs() -> tuple[PolicySpec, ...]:
    return (
        PolicySpec(
            CONTROL_PLANE, "capt: AWS cloud provider on control-plane machines", control_plane_policy()
        ),
        PolicySpec(
            NODES, "capt: every machine (cloud provider node, ECR, bootstrap data, SSM agent)", nodes_policy()
        ),
        PolicySpec(
            WORKER_POLICY,
            "capt: the capt worker (exactly the AWS calls its activities make)",
            worker_policy(),
        ),
    )


ROLE_SPECS: tuple[RoleSpec, ...] = (
    RoleSpec(CONTROL_PLANE, "capt control-plane machines", (CONTROL_PLANE, NODES), CONTROL_PLANE_PROFILE),
    RoleSpec(NODES, "capt worker machines", (NODES,), NODES_PROFILE),
)


Action = Literal["created", "updated", "unchanged"]


class IamChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["policy", "role", "role-policy-attachment", "instance-profile"]
    name: str
    arn: str = ""
    action: Action


class BootstrapIamResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: str
    changes: tuple[IamChange, ...]
    worker_policy_arn: str
    worker_policy: dict

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def _document(value: Any) -> dict:
    """IAM returns policy documents URL-encoded; boto3 usually decodes them already."""
    if isinstance(value, dict):
        return value
    return json.loads(urllib.parse.unquote(value))


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _ensure_role(iam: Any, spec: RoleSpec) -> tuple[str, Action]:
    try:
        role = iam.create_role(
            RoleName=spec.name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST), Description=spec.description
        )["Role"]
        return role["Arn"], "created"
    except ClientError as err:
        if _code(err) != "EntityAlreadyExists":
            raise
    role = iam.get_role(RoleName=spec.name)["Role"]
    if _same(_document(role["AssumeRolePolicyDocument"]), EC2_TRUST):
        return role["Arn"], "unchanged"
    iam.update_assume_role_policy(RoleName=spec.name, PolicyDocument=json.dumps(EC2_TRUST))
    return role["Arn"], "updated"


def _ensure_policy(iam: Any, partition: str, account_id: str, spec: PolicySpec) -> tuple[str, Action]:
    arn = f"arn:{partition}:iam::{account_id}:policy/{spec.name}"
    try:
        created = iam.create_policy(
            PolicyName=spec.name, PolicyDocument=json.dumps(spec.document), Description=spec.description
        )["Policy"]
        return created["Arn"], "created"
    except ClientError as err:
        if _code(err) != "EntityAlreadyExists":
            raise
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    current = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    if _same(_document(current["Document"]), spec.document):
        return arn, "unchanged"
    # A managed policy keeps at most five versions: drop the oldest non-default one first.
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    if len(versions) >= 5:
        oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(spec.document), SetAsDefault=True)
    return arn, "updated"


def _ensure_attached(iam: Any, role: str, policy_arn: str) -> Action:
    attached = {
        p["PolicyArn"]
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role)
        for p in page["AttachedPolicies"]
    }
    if policy_arn in attached:
        return "unchanged"
    iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)
    return "created"


def _ensure_instance_profile(iam: Any, name: str, role: str) -> tuple[str, Action]:
    action: Action = "unchanged"
    try:
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        action = "created"
    except ClientError as err:
        if _code(err) != "EntityAlreadyExists":
            raise
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    roles = [r["RoleName"] for r in profile.get("Roles", [])]
    if role in roles:
        return profile["Arn"], action
    if roles:
        raise ConflictError(
            f"instance profile {name} holds role {roles[0]}, not {role}; capt will not replace it"
        )
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    return profile["Arn"], "created" if action == "created" else "updated"


def bootstrap_iam(iam: Any | None = None) -> BootstrapIamResult:
    """Create or update capt's IAM roles, policies and instance profiles. Idempotent: a second
    run changes nothing and reports every item `unchanged`.

    Roles first (their ARN names the account and partition the policy ARNs need), then the
    managed policies (a changed document becomes a new default version), attachments, and the
    instance profiles with their role.
    """
    if iam is None:
        from capt.activities.aws import session

        iam = session.client("iam")
    changes: list[IamChange] = []
    role_arns: dict[str, str] = {}
    for role in ROLE_SPECS:
        arn, action = _ensure_role(iam, role)
        role_arns[role.name] = arn
        changes.append(IamChange(kind="role", name=role.name, arn=arn, action=action))
    any_role_arn = next(iter(role_arns.values()))
    partition, account_id = any_role_arn.split(":")[1], any_role_arn.split(":")[4]

    policy_arns: dict[str, str] = {}
    for spec in policy_specs():
        arn, action = _ensure_policy(iam, partition, account_id, spec)
        policy_arns[spec.name] = arn
        changes.append(IamChange(kind="policy", name=spec.name, arn=arn, action=action))

    for role in ROLE_SPECS:
        for policy in role.policies:
            action = _ensure_attached(iam, role.name, policy_arns[policy])
            changes.append(
                IamChange(kind="role-policy-attachment", name=f"{role.name} <- {policy}", action=action)
            )
        arn, action = _ensure_instance_profile(iam, role.instance_profile, role.name)
        changes.append(IamChange(kind="instance-profile", name=role.instance_profile, arn=arn, action=action))

    return BootstrapIamResult(
        account_id=account_id,
        changes=tuple(changes),
        worker_policy_arn=policy_arns[WORKER_POLICY],
        worker_policy=worker_policy(),
    )
