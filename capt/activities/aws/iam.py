"""`capt bootstrap iam`: the IAM roles, policies and instance profiles capt's clusters use.

What `clusterawsadm bootstrap iam create-cloudformation-stack` does for CAPA, without
CloudFormation, idempotently, with plain IAM calls:

- Instance profile + role `control-plane.cluster-api-provider-aws.sigs.k8s.io` (the name CAPA's
  manifests give control-plane machines): the AWS cloud provider's control-plane policy
  (the in-cluster cloud provider manages Service load balancers, their security groups and
  routes) plus the node policy.
- Instance profile + role `nodes.cluster-api-provider-aws.sigs.k8s.io`: the node policy — EC2
  describes for the kubelet/cloud provider, ECR read-only for images, read-and-delete of the
  node's own bootstrap data in Secrets Manager, and the SSM agent (Run Command is how capt
  removes a departing control-plane machine's etcd member).
- The managed policy `capt-worker.cluster-api-provider-aws.sigs.k8s.io` for whatever principal
  runs the capt worker: exactly the AWS actions capt's activities call (a test derives them
  from the code and compares), scoped where IAM can scope them.

Tighter than CAPA's defaults: no management-cluster controller policy on the control plane
(there is no management cluster), secrets readable only under capt's bootstrap prefix, and
the SSM agent's Run Command actions instead of the whole AmazonSSMManagedInstanceCore policy
(no inventory, patching, associations or parameters).

This module is operator tooling run by `capt bootstrap iam` with IAM-admin credentials, never
by the worker (none of it is a Temporal activity): its IAM calls are deliberately absent from
the worker policy.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from capt.activities.aws import secrets
from capt.activities.aws.errors import ConflictError

CONTROL_PLANE = "control-plane.cluster-api-provider-aws.sigs.k8s.io"
NODES = "nodes.cluster-api-provider-aws.sigs.k8s.io"
WORKER_POLICY = "capt-worker.cluster-api-provider-aws.sigs.k8s.io"
# Instance profile names as CAPA's manifests spell them (AWSMachineTemplate.spec.iamInstanceProfile).
CONTROL_PLANE_PROFILE = CONTROL_PLANE
NODES_PROFILE = NODES

POLICY_VERSION = "2012-10-17"
EC2_TRUST = {
    "Version": POLICY_VERSION,
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}

# --------------------------------------------------------------------------------------------
# what machines may do


# The AWS cloud provider (cloud-provider-aws) on control-plane machines: node lifecycle,
# Service type=LoadBalancer (classic ELB / NLB with their security groups), routes, volumes.
CLOUD_PROVIDER_CONTROL_PLANE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeTags",
    "ec2:AssignIpv6Addresses",
    "ec2:AttachVolume",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateRoute",
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:CreateVolume",
    "ec2:DeleteRoute",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteVolume",
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVolumes",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
    "ec2:DetachVolume",
    "ec2:ModifyInstanceAttribute",
    "ec2:ModifyVolume",
    "ec2:RevokeSecurityGroupIngress",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
    "elasticloadbalancing:AttachLoadBalancerToSubnets",
    "elasticloadbalancing:ConfigureHealthCheck",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateLoadBalancerListeners",
    "elasticloadbalancing:CreateLoadBalancerPolicy",
    "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteLoadBalancerListeners",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancerPolicies",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DetachLoadBalancerFromSubnets",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer",
    "elasticloadbalancing:SetLoadBalancerPoliciesOfListener",
    "iam:CreateServiceLinkedRole",
    "kms:DescribeKey",
)

# Every node (control plane too): the kubelet's and cloud provider's describes, pulling images
# from ECR.
NODE_ACTIONS = (
    "ec2:DescribeInstances",
    "ec2:DescribeRegions",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeRepositories",
    "ecr:GetAuthorizationToken",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:ListImages",
)

# The boothook reads its bootstrap data and deletes it. The names carry 256 random bits and
# nodes cannot list secrets, so a node can only fetch the data whose name its user data holds.
NODE_SECRET_ACTIONS = ("secretsmanager:DeleteSecret", "secretsmanager:GetSecretValue")

# The SSM agent, enough for Run Command (the etcd member removal) and nothing else.
SSM_AGENT_ACTIONS = (
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)


def secret_arn(name_pattern: str) -> str:
    return f"arn:*:secretsmanager:*:*:secret:{name_pattern}"


def role_arn(name: str) -> str:
    return f"arn:*:iam::*:role/{name}"


def _statement(
    sid: str, actions: Iterable[str], resources: Iterable[str], condition: dict | None = None
) -> dict:
    st: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": sorted(resources),
    }
    if condition:
        st["Condition"] = condition
    return st


def control_plane_policy() -> dict:
    return {
        "Version": POLICY_VERSION,
        "Statement": [_statement("CloudProviderControlPlane", CLOUD_PROVIDER_CONTROL_PLANE_ACTIONS, ["*"])],
    }


def nodes_policy() -> dict:
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            _statement("CloudProviderNode", NODE_ACTIONS, ["*"]),
            _statement(
                "BootstrapData", NODE_SECRET_ACTIONS, [secret_arn(secrets.NODE_READABLE_SECRET_PATTERN)]
            ),
            _statement("SsmAgentRunCommand", SSM_AGENT_ACTIONS, ["*"]),
        ],
    }


# --------------------------------------------------------------------------------------------
# what the capt worker may do
#
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


# --------------------------------------------------------------------------------------------
# how each worker action is scoped (docs/iam.md is generated from this table and checked by
# tests/activities/aws/test_iam.py)
#
# capt tags everything it creates on creation (TagSpecifications / Tags) with the CAPA role tag
# `sigs.k8s.io/cluster-api-provider-aws/role`, next to the ownership tag
# `sigs.k8s.io/cluster-api-provider-aws/cluster/<id>`. IAM conditions need a fixed tag key, and the
# ownership tag's key holds the cluster id, so the policy conditions on the role tag: a create
# must carry it (aws:RequestTag), a change or delete may touch only what carries it
# (aws:ResourceTag). That the resource is *this* cluster's is then checked in code (every lookup
# keys on the ownership tag). Resources the cluster's Kubernetes made (cloud provider load
# balancers, target groups and security groups; CSI volumes) carry the Kubernetes tags instead.


def _arn(service: str, resource: str) -> str:
    return f"arn:*:{service}:*:*:{resource}"


def _ec2(*types: str) -> tuple[str, ...]:
    return tuple(_arn("ec2", f"{t}/*") for t in types)


def _elb(*resources: str) -> tuple[str, ...]:
    return tuple(_arn("elasticloadbalancing", r) for r in resources)


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


# --------------------------------------------------------------------------------------------
# creating them


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
