"""AWS's dependency errors, which moto does not raise, for tests of deletion.

moto deletes a security group that another group's rule still names, or that an ELB or an
interface still uses, and a subnet that still holds interfaces; AWS answers
`DependencyViolation`. A deletion test run on plain moto passes whatever order capt deletes in.
`StrictAws` is a botocore `before-call` hook (install it with `activities.aws.session.hooked`,
or `strict_aws()` below) that refuses those calls as AWS does, after reading moto's state with
its own, unhooked clients:

- DeleteSecurityGroup: a rule of another group names it (ingress or egress), an interface, a
  live instance, or a classic or v2 load balancer uses it;
- DeleteSubnet: interfaces, live instances, live NAT gateways or load balancers in it;
- DeleteVpc: non-default security groups, interfaces, live instances or load balancers in it
  (moto itself checks subnets and route tables);
- DeleteNetworkInterface: attached to a live instance, or a live NAT gateway's
  (`InvalidNetworkInterface.InUse`).

What AWS removes by itself does not count: a terminated instance's own interfaces and a deleted
NAT gateway's interface (moto keeps both).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.awsrequest import AWSResponse

from capt.activities.aws import session

LIVE_INSTANCE = ("pending", "running", "stopping", "stopped", "shutting-down")
LIVE_NAT = ("pending", "available", "deleting")


class StrictAws:
    def __init__(self, region: str) -> None:
        self.region = region
        self.refused: Counter[str] = Counter()  # "<Operation> <id>" -> refusals
        self._lock = threading.Lock()
        self._clients: dict[str, object] = {}
        self._clients_lock = threading.Lock()

    # --- moto's state, read with unhooked clients -------------------------------------------------
    def _client(self, service: str):
        # One client per service for the hook's life: creating one costs ~50 ms of CPU (botocore
        # loads the service model), and the hook runs on every deletion call.
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(service, region_name=self.region)
            return self._clients[service]

    def _ec2(self):
        return self._client("ec2")

    def _instances(self) -> list[dict]:
        return [i for r in self._ec2().describe_instances()["Reservations"] for i in r["Instances"]]

    def _live_enis(self) -> list[dict]:
        ec2 = self._ec2()
        terminated = {i["InstanceId"] for i in self._instances() if i["State"]["Name"] == "terminated"}
        dead_nat_enis = {
            a.get("NetworkInterfaceId")
            for n in ec2.describe_nat_gateways()["NatGateways"]
            if n.get("State") not in LIVE_NAT
            for a in n.get("NatGatewayAddresses", [])
        }
        out = []
        for e in ec2.describe_network_interfaces()["NetworkInterfaces"]:
            att = e.get("Attachment") or {}
            # A terminated instance's primary interface (moto says DeleteOnTermination=False).
            if att.get("InstanceId") in terminated and (
                att.get("DeleteOnTermination", True) or att.get("DeviceIndex") == 0
            ):
                continue
            if e["NetworkInterfaceId"] in dead_nat_enis:
                continue
            out.append(e)
        return out

    def _load_balancers(self) -> list[dict]:
        """Classic and v2 load balancers as {name, vpc, subnets, groups}."""
        out = []
        for lb in self._client("elb").describe_load_balancers()["LoadBalancerDescriptions"]:
            out.append(
                {
                    "name": lb["LoadBalancerName"],
                    "vpc": lb.get("VPCId"),
                    "subnets": set(lb.get("Subnets", [])),
                    "groups": set(lb.get("SecurityGroups", [])),
                }
            )
        for lb in self._client("elbv2").describe_load_balancers()["LoadBalancers"]:
            out.append(
                {
                    "name": lb["LoadBalancerName"],
                    "vpc": lb.get("VpcId"),
                    "subnets": {z.get("SubnetId") for z in lb.get("AvailabilityZones", [])},
                    "groups": set(lb.get("SecurityGroups", [])),
                }
            )
        return out

    # --- the checks -----------------------------------------------------------------------------
    def group_in_use(self, gid: str) -> str | None:
        for g in self._ec2().describe_security_groups()["SecurityGroups"]:
            if g["GroupId"] == gid:
                continue
            for key in ("IpPermissions", "IpPermissionsEgress"):
                for p in g.get(key, []):
                    if any(pair.get("GroupId") == gid for pair in p.get("UserIdGroupPairs", [])):
                        return f"resource {gid} has a dependent object (a rule of {g['GroupId']})"
        for e in self._live_enis():
            if any(grp.get("GroupId") == gid for grp in e.get("Groups", [])):
                return f"resource {gid} has a dependent object ({e['NetworkInterfaceId']})"
        for i in self._instances():
            if i["State"]["Name"] in LIVE_INSTANCE and any(
                grp.get("GroupId") == gid for grp in i.get("SecurityGroups", [])
            ):
                return f"resource {gid} has a dependent object ({i['InstanceId']})"
        for lb in self._load_balancers():
            if gid in lb["groups"]:
                return f"resource {gid} has a dependent object (load balancer {lb['name']})"
        return None

    def subnet_in_use(self, sid: str) -> str | None:
        ec2 = self._ec2()
        for e in self._live_enis():
            if e.get("SubnetId") == sid:
                return (
                    f"The subnet '{sid}' has dependencies and cannot be deleted ({e['NetworkInterfaceId']})."
                )
        for i in self._instances():
            if i["State"]["Name"] in LIVE_INSTANCE and i.get("SubnetId") == sid:
                return f"The subnet '{sid}' has dependencies and cannot be deleted ({i['InstanceId']})."
        for n in ec2.describe_nat_gateways()["NatGateways"]:
            if n.get("State") in LIVE_NAT and n.get("SubnetId") == sid:
                return f"The subnet '{sid}' has dependencies and cannot be deleted ({n['NatGatewayId']})."
        for lb in self._load_balancers():
            if sid in lb["subnets"]:
                return (
                    f"The subnet '{sid}' has dependencies and cannot be deleted (load balancer {lb['name']})."
                )
        return None

    def vpc_in_use(self, vid: str) -> str | None:
        ec2 = self._ec2()
        for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])[
            "SecurityGroups"
        ]:
            if g.get("VpcId") == vid and g["GroupName"] != "default":
                return f"The vpc '{vid}' has dependencies and cannot be deleted ({g['GroupId']})."
        for e in self._live_enis():
            if e.get("VpcId") == vid:
                return f"The vpc '{vid}' has dependencies and cannot be deleted ({e['NetworkInterfaceId']})."
        for i in self._instances():
            if i["State"]["Name"] in LIVE_INSTANCE and i.get("VpcId") == vid:
                return f"The vpc '{vid}' has dependencies and cannot be deleted ({i['InstanceId']})."
        for lb in self._load_balancers():
            if lb["vpc"] == vid:
                return f"The vpc '{vid}' has dependencies and cannot be deleted (load balancer {lb['name']})."
        return None

    def eni_in_use(self, eni_id: str) -> str | None:
        ec2 = self._ec2()
        found = ec2.describe_network_interfaces(
            Filters=[{"Name": "network-interface-id", "Values": [eni_id]}]
        )
        live = {i["InstanceId"] for i in self._instances() if i["State"]["Name"] in LIVE_INSTANCE}
        for e in found["NetworkInterfaces"]:
            att = e.get("Attachment") or {}
            if e["NetworkInterfaceId"] == eni_id and att.get("InstanceId") in live:
                return f"Network interface '{eni_id}' is currently in use."
        for n in ec2.describe_nat_gateways()["NatGateways"]:
            if n.get("State") in LIVE_NAT and any(
                a.get("NetworkInterfaceId") == eni_id for a in n.get("NatGatewayAddresses", [])
            ):
                return f"Network interface '{eni_id}' is currently in use."
        return None

    # --- the hook -------------------------------------------------------------------------------
    CHECKS = {
        "DeleteSecurityGroup": ("GroupId", "group_in_use", "DependencyViolation"),
        "DeleteSubnet": ("SubnetId", "subnet_in_use", "DependencyViolation"),
        "DeleteVpc": ("VpcId", "vpc_in_use", "DependencyViolation"),
        "DeleteNetworkInterface": ("NetworkInterfaceId", "eni_in_use", "InvalidNetworkInterface.InUse"),
    }

    def __call__(self, model, params, **kwargs):
        if model.service_model.service_id.hyphenize() != "ec2" or model.name not in self.CHECKS:
            return None
        key, check, code = self.CHECKS[model.name]
        body = params.get("body") or {}
        rid = body.get(key) if isinstance(body, dict) else None
        if not rid:
            return None
        reason = getattr(self, check)(rid)
        if reason is None:
            return None
        with self._lock:
            self.refused[f"{model.name} {rid}"] += 1
        parsed = {"Error": {"Code": code, "Message": reason}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://strict.invalid", 400, {}, None), parsed


@contextmanager
def strict_aws(region: str) -> Iterator[StrictAws]:
    """AWS's dependency errors on every capt client used inside the block."""
    hook = StrictAws(region)
    with session.hooked("before-call", hook):
        yield hook
