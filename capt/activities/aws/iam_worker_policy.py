"""The worker's IAM policy, derived from what the worker's code calls: every action with its resource
scope and conditions (tag on create, act only on what carries the cluster's tags), and the tables
docs/iam.md prints. tests/activities/aws/test_iam.py checks it against the code."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from capt.activities.aws import secrets
from capt.activities.aws.iam import (
    CONTROL_PLANE,
    NODES,
    POLICY_VERSION,
    _statement,
    control_plane_policy,
    nodes_policy,
    role_arn,
    secret_arn,
)

# Hand-maintained on purpose: tests/activities/aws/test_iam.py derives the AWS actions the activities
# call from their source and fails unless this list is exactly those plus IMPLIED_ACTIONS.
WORKER_ACTIONS: tuple[str, ...] = (
    "ec2:AllocateAddress",
    "ec2:AssociateRouteTable",
    "ec2:AttachInternetGateway",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateInternetGateway",
    "ec2:CreateNatGateway",
    "ec2:CreateRoute",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:CreateSubnet",
    "ec2:CreateTags",
    "ec2:CreateVpc",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteNatGateway",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteRouteTable",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSubnet",
    "ec2:DeleteVolume",
    "ec2:DeleteVpc",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVolumes",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
    "ec2:DetachInternetGateway",
    "ec2:DisassociateRouteTable",
    "ec2:ModifySubnetAttribute",
    "ec2:ModifyVpcAttribute",
    "ec2:ReleaseAddress",
    "ec2:ReplaceRoute",
    "ec2:ReplaceRouteTableAssociation",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:ConfigureHealthCheck",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:RegisterTargets",
    "events:DeleteRule",
    "events:PutRule",
    "events:PutTargets",
    "events:RemoveTargets",
    "iam:PassRole",
    "secretsmanager:CreateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:ListSecrets",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
    "sqs:CreateQueue",
    "sqs:DeleteMessage",
    "sqs:DeleteQueue",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SetQueueAttributes",
    "ssm:GetCommandInvocation",
    "ssm:SendCommand",
    "tag:GetResources",
)


# Permissions AWS checks for a call without the call being made:
# - tag-on-create: EC2 create calls with TagSpecifications need ec2:CreateTags; ELB creates with
#   Tags need elasticloadbalancing:AddTags; CreateSecret with Tags needs secretsmanager:TagResource.
# - RunInstances with an instance profile needs iam:PassRole on the profile's role.
IMPLIED_ACTIONS: dict[str, tuple[str, ...]] = {
    "ec2:RunInstances": ("ec2:CreateTags", "iam:PassRole"),
    "ec2:AllocateAddress": ("ec2:CreateTags",),
    "ec2:CreateInternetGateway": ("ec2:CreateTags",),
    "ec2:CreateNatGateway": ("ec2:CreateTags",),
    "ec2:CreateRouteTable": ("ec2:CreateTags",),
    "ec2:CreateSecurityGroup": ("ec2:CreateTags",),
    "ec2:CreateSubnet": ("ec2:CreateTags",),
    "ec2:CreateVpc": ("ec2:CreateTags",),
    "elasticloadbalancing:CreateLoadBalancer": ("elasticloadbalancing:AddTags",),
    "elasticloadbalancing:CreateTargetGroup": ("elasticloadbalancing:AddTags",),
    "secretsmanager:CreateSecret": ("secretsmanager:TagResource",),
}


def implied_by(actions: Iterable[str]) -> set[str]:
    return {implied for a in actions for implied in IMPLIED_ACTIONS.get(a, ())}


def _arn(service: str, resource: str) -> str:
    return f"arn:*:{service}:*:*:{resource}"


def _ec2(*types: str) -> tuple[str, ...]:
    return tuple(_arn("ec2", f"{t}/*") for t in types)


def _elb(*resources: str) -> tuple[str, ...]:
    return tuple(_arn("elasticloadbalancing", r) for r in resources)


# How each worker action is scoped (docs/iam.md is generated from this table and checked by
# tests/activities/aws/test_iam.py).
#
# capt tags everything it creates on creation (TagSpecifications / Tags) with the CAPA role tag
# `sigs.k8s.io/cluster-api-provider-aws/role`, next to the ownership tag
# `sigs.k8s.io/cluster-api-provider-aws/cluster/<id>`. IAM conditions need a fixed tag key, and the
# ownership tag's key holds the cluster id, so the policy conditions on the role tag: a create
# must carry it (aws:RequestTag), a change or delete may touch only what carries it
# (aws:ResourceTag). That the resource is *this* cluster's is then checked in code (every lookup
# keys on the ownership tag). Resources the cluster's Kubernetes made (cloud provider load
# balancers, target groups and security groups; CSI volumes) carry the Kubernetes tags instead.
ROLE_TAG_KEY = "sigs.k8s.io/cluster-api-provider-aws/role"


# A create must carry the role tag and an ownership tag key (aws:TagKeys takes patterns, unlike
# aws:RequestTag/<key>). The role tag is CAPA's too: CAPA-made resources in the same account also
# pass the change/delete condition below; capt's code still refuses what the cluster does not own.
TAGGED_ON_CREATE = {
    "Null": {f"aws:RequestTag/{ROLE_TAG_KEY}": "false"},
    "ForAnyValue:StringLike": {"aws:TagKeys": ["sigs.k8s.io/cluster-api-provider-aws/cluster/*"]},
}


CAPT_TAGGED = {"Null": {f"aws:ResourceTag/{ROLE_TAG_KEY}": "false"}}


# Made by the cluster's Kubernetes: the cloud provider tags its load balancers and target groups
# with the Service; the EBS CSI driver names every volume it creates in a tag.
SERVICE_TAGGED = {"Null": {"aws:ResourceTag/kubernetes.io/service-name": "false"}}


CSI_VOLUME = {"Null": {"aws:ResourceTag/CSIVolumeName": "false"}}


EC2_CREATE_ACTIONS = (
    "AllocateAddress",
    "CreateInternetGateway",
    "CreateNatGateway",
    "CreateRouteTable",
    "CreateSecurityGroup",
    "CreateSubnet",
    "CreateVpc",
    "RunInstances",
)


ON_CREATE_ONLY = {"StringEquals": {"ec2:CreateAction": list(EC2_CREATE_ACTIONS)}}


ELB_ON_CREATE_ONLY = {
    "StringEquals": {"elasticloadbalancing:CreateAction": ["CreateLoadBalancer", "CreateTargetGroup"]}
}


EC2_CHANGE_ON_EXISTING = (
    "capt's own resource: its role tag must be there (aws:ResourceTag); which cluster is checked in code"
)


@dataclass(frozen=True)
class Grant:
    """One (resources, condition) an action is allowed on; `why` says why it is as broad as it is."""

    resources: tuple[str, ...]
    condition: dict | None = None
    why: str = ""


READ_ONLY = Grant(("*",), None, "a read; AWS offers no resource-level permission for it")


_SUBNET, _VPC, _RT, _IGW, _NAT, _EIP, _SG, _INSTANCE, _VOLUME = (
    _ec2("subnet"),
    _ec2("vpc"),
    _ec2("route-table"),
    _ec2("internet-gateway"),
    _ec2("natgateway"),
    _ec2("elastic-ip"),
    _ec2("security-group"),
    _ec2("instance"),
    _ec2("volume"),
)


_CLB = _elb("loadbalancer/*")


_TG = _elb("targetgroup/*")


def _owned(*resources: tuple[str, ...]) -> Grant:
    return Grant(tuple(r for group in resources for r in group), CAPT_TAGGED, EC2_CHANGE_ON_EXISTING)


def _created(*resources: tuple[str, ...]) -> Grant:
    return Grant(
        tuple(r for group in resources for r in group),
        TAGGED_ON_CREATE,
        "created by capt, tagged in the same call (aws:RequestTag)",
    )


WORKER_SCOPES: dict[str, tuple[Grant, ...]] = {
    "ec2:AllocateAddress": (_created(_EIP),),
    "ec2:AssociateRouteTable": (_owned(_RT, _SUBNET),),
    "ec2:AttachInternetGateway": (_owned(_IGW, _VPC),),
    "ec2:AuthorizeSecurityGroupIngress": (_owned(_SG),),
    "ec2:CreateInternetGateway": (_created(_IGW),),
    "ec2:CreateNatGateway": (_created(_NAT), _owned(_SUBNET, _EIP)),
    "ec2:CreateRoute": (_owned(_RT),),
    "ec2:CreateRouteTable": (_created(_RT), _owned(_VPC)),
    "ec2:CreateSecurityGroup": (_created(_SG), _owned(_VPC)),
    "ec2:CreateSubnet": (_created(_SUBNET), _owned(_VPC)),
    "ec2:CreateTags": (
        Grant(("*",), ON_CREATE_ONLY, "only as part of capt's create calls (ec2:CreateAction)"),
    ),
    "ec2:CreateVpc": (_created(_VPC),),
    "ec2:DeleteInternetGateway": (_owned(_IGW),),
    "ec2:DeleteNatGateway": (_owned(_NAT),),
    "ec2:DeleteNetworkInterface": (
        Grant(
            _ec2("network-interface"),
            None,
            "left behind by what Kubernetes made (load balancers, CSI attachments), which AWS creates "
            "untagged; the sweep deletes only available interfaces in the cluster's VPC",
        ),
    ),
    "ec2:DeleteRouteTable": (_owned(_RT),),
    "ec2:DeleteSecurityGroup": (
        _owned(_SG),
        Grant(
            _SG,
            None,
            "the cloud provider's load-balancer groups carry only kubernetes.io/cluster/<id>, a key "
            "IAM cannot match by pattern; the sweep deletes only groups with that tag in the cluster's VPC",
        ),
    ),
    "ec2:DeleteSubnet": (_owned(_SUBNET),),
    "ec2:DeleteVolume": (
        _owned(_VOLUME),
        Grant(_VOLUME, CSI_VOLUME, "volumes the cluster's EBS CSI driver made (CSIVolumeName tag)"),
    ),
    "ec2:DeleteVpc": (_owned(_VPC),),
    "ec2:DetachInternetGateway": (_owned(_IGW, _VPC),),
    "ec2:DisassociateRouteTable": (_owned(_RT, _SUBNET),),
    "ec2:ModifySubnetAttribute": (_owned(_SUBNET),),
    "ec2:ModifyVpcAttribute": (_owned(_VPC),),
    "ec2:ReleaseAddress": (_owned(_EIP),),
    "ec2:ReplaceRoute": (_owned(_RT),),
    "ec2:ReplaceRouteTableAssociation": (_owned(_RT, _SUBNET),),
    "ec2:RevokeSecurityGroupEgress": (_owned(_SG),),
    "ec2:RevokeSecurityGroupIngress": (_owned(_SG),),
    "ec2:RunInstances": (
        _created(_INSTANCE, _VOLUME),
        Grant(
            _ec2("subnet", "security-group", "network-interface", "key-pair") + ("arn:*:ec2:*::image/*",),
            None,
            "what a launch uses: the AMI (public images are not ours to tag), the subnet, the "
            "groups (also the manifest's additionalSecurityGroups), the interface AWS creates, the key",
        ),
    ),
    "ec2:TerminateInstances": (_owned(_INSTANCE),),
    "elasticloadbalancing:AddTags": (
        Grant(_CLB + _TG, ELB_ON_CREATE_ONLY, "only as part of capt's create calls"),
    ),
    "elasticloadbalancing:ConfigureHealthCheck": (_owned(_CLB),),
    "elasticloadbalancing:CreateListener": (_owned(_CLB),),
    "elasticloadbalancing:CreateLoadBalancer": (_created(_CLB),),
    "elasticloadbalancing:CreateTargetGroup": (_created(_TG),),
    "elasticloadbalancing:DeleteLoadBalancer": (
        _owned(_CLB),
        Grant(
            _CLB, SERVICE_TAGGED, "the cloud provider's Service load balancers (kubernetes.io/service-name)"
        ),
    ),
    "elasticloadbalancing:DeleteTargetGroup": (
        _owned(_TG),
        Grant(_TG, SERVICE_TAGGED, "the cloud provider's target groups (kubernetes.io/service-name)"),
    ),
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer": (_owned(_CLB),),
    "elasticloadbalancing:DeregisterTargets": (_owned(_TG),),
    "elasticloadbalancing:ModifyLoadBalancerAttributes": (_owned(_CLB),),
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer": (_owned(_CLB),),
    "elasticloadbalancing:RegisterTargets": (_owned(_TG),),
    "iam:PassRole": (
        Grant(
            (role_arn(CONTROL_PLANE), role_arn(NODES)),
            {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            "the two machine roles, to EC2 only",
        ),
    ),
    "secretsmanager:ListSecrets": (READ_ONLY,),
    "ssm:GetCommandInvocation": (READ_ONLY,),
    "ssm:SendCommand": (
        Grant(("arn:*:ssm:*::document/AWS-RunShellScript",), None, "the one document capt runs"),
        Grant(_INSTANCE, CAPT_TAGGED, "only on capt's machines (their role tag)"),
    ),
    "tag:GetResources": (READ_ONLY,),
}


_SECRETS = Grant((secret_arn(f"{secrets.ROOT}/*"),), None, "capt's secrets: names under capt/")


_EVENTS = Grant(
    ("arn:*:sqs:*:*:capt-*", "arn:*:events:*:*:rule/capt-*"),
    None,
    "the health check's optional EventBridge rule and SQS queue, named capt-*",
)


_MUTATING_PREFIXES = (
    "Allocate",
    "Associate",
    "Attach",
    "Authorize",
    "Create",
    "Delete",
    "Deregister",
    "Detach",
    "Disassociate",
    "Modify",
    "Pass",
    "Put",
    "Register",
    "Release",
    "Remove",
    "Replace",
    "Revoke",
    "Run",
    "Send",
    "Set",
    "Tag",
    "Terminate",
    "Add",
    "Configure",
)


def is_mutating(action: str) -> bool:
    return action.split(":", 1)[1].startswith(_MUTATING_PREFIXES)


def worker_scope(action: str) -> tuple[Grant, ...]:
    """How `action` is scoped in the worker policy (the table above, or the rule for its service)."""
    if action in WORKER_SCOPES:
        return WORKER_SCOPES[action]
    service, name = action.split(":", 1)
    if service == "secretsmanager":
        return (_SECRETS,)
    if service in ("sqs", "events"):
        return (_EVENTS,)
    if not is_mutating(action):
        return (READ_ONLY,)
    raise KeyError(f"{action}: a mutating action with no scope in iam.WORKER_SCOPES")


def worker_policy(actions: Iterable[str] = WORKER_ACTIONS) -> dict:
    """The worker's policy document: every mutating action scoped by capt's role tag, an ARN
    prefix or a named reason (docs/iam.md). One statement per distinct condition, holding the
    union of its grants' resources (IAM's 6,144-character limit): an action is only ever checked
    against the resource types its request touches, so the union adds no access a grant lacks —
    except that a create's parent (the VPC of CreateSubnet, …) is then also matched under the
    create's tag condition, where the table asks for the parent's own tag; both are capt's."""
    groups: dict[str, tuple[dict | None, list[str], set[str]]] = {}
    for action in sorted(set(actions)):
        for grant in worker_scope(action):
            # Unconditioned grants keep their own resources (a union with a read's "*" would
            # open every resource to every action in the statement).
            key = json.dumps([grant.condition, grant.resources if grant.condition is None else []])
            _, acts, resources = groups.setdefault(key, (grant.condition, [], set()))
            if action not in acts:
                acts.append(action)
            resources.update(grant.resources)
    statements = []
    for index, key in enumerate(sorted(groups)):
        condition, acts, resources = groups[key]
        statements.append(_statement(f"Capt{index + 1:02d}", acts, resources, condition))
    return {"Version": POLICY_VERSION, "Statement": statements}


def _condition_text(condition: dict | None) -> str:
    if not condition:
        return "—"
    parts = []
    for op, pairs in condition.items():
        for key, value in pairs.items():
            if op == "Null" and value == "false":
                parts.append(f"`{key}` present")
            else:
                shown = ", ".join(value) if isinstance(value, list) else value
                parts.append(f"`{key}` {op} {shown}")
    return "; ".join(parts)


def worker_policy_table(actions: Iterable[str] = WORKER_ACTIONS) -> str:
    """docs/iam.md's worker table: every action, each of its grants, and why."""
    rows = ["| action | resources | condition | why |", "|---|---|---|---|"]
    for action in sorted(set(actions)):
        for grant in worker_scope(action):
            rows.append(
                f"| `{action}` | {'<br>'.join(f'`{r}`' for r in grant.resources)} | "
                f"{_condition_text(grant.condition)} | {grant.why} |"
            )
    return "\n".join(rows) + "\n"


def machine_policy_table() -> str:
    """docs/iam.md's machine table: each statement of the control-plane and node policies."""
    rows = ["| policy | statement | actions | resources | why |", "|---|---|---|---|---|"]
    why = {
        "CloudProviderControlPlane": "the AWS cloud provider (cloud-provider-aws) on control-plane "
        "machines: its resources carry kubernetes.io/cluster/<id>, a key IAM cannot match by "
        "pattern, and upstream's recommended policy is the same",
        "CloudProviderNode": "reads only (the kubelet's and cloud provider's describes, ECR pulls)",
        "BootstrapData": "a node reads and deletes only bootstrap data, whose 256-bit random names "
        "it cannot list",
        "SsmAgentRunCommand": "the SSM agent on its own instance; these actions have no "
        "resource-level permissions",
    }
    for name, doc in ((CONTROL_PLANE, control_plane_policy()), (NODES, nodes_policy())):
        for st in doc["Statement"]:
            rows.append(
                f"| {name.split('.')[0]} | {st['Sid']} | {len(st['Action'])}: "
                f"{', '.join(f'`{a}`' for a in st['Action'])} | "
                f"{'<br>'.join(f'`{r}`' for r in st['Resource'])} | {why[st['Sid']]} |"
            )
    return "\n".join(rows) + "\n"


def policy_actions(document: dict) -> set[str]:
    out: set[str] = set()
    for st in document["Statement"]:
        acts = st["Action"]
        out.update([acts] if isinstance(acts, str) else acts)
    return out
