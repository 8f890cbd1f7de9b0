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

from collections.abc import Iterable
from typing import Any

from capt.activities.aws import secrets

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
