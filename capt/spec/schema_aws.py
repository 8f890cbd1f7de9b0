"""The schemas of CAPA's kinds (AWSCluster, AWSMachine, AWSMachineTemplate) per API version: every
field capt reads, ignores on purpose, or refuses as not supported."""

from __future__ import annotations

import copy

from capt.spec.schema_base import (
    ANY,
    FREE,
    NS,
    TEMPLATE_META,
    ListOf,
    NotSupported,
    _object,
    _with,
)

_INGRESS_RULE_V1BETA2 = {
    # capt opens the listed CIDRs to the API server's port: the rule's protocol and ports are
    # read as CAPA writes them for that rule.
    "description": ANY,
    "protocol": ANY,
    "fromPort": ANY,
    "toPort": ANY,
    "cidrBlocks": ANY,
    "ipv6CidrBlocks": NS,
    "sourceSecurityGroupIds": NS,
    "sourceSecurityGroupRoles": NS,
    "natGatewaysIPsSource": NS,
}


_AWS_CLUSTER_V1BETA2 = {
    "network": {
        "vpc": {
            "id": ANY,
            "cidrBlock": ANY,
            "availabilityZoneUsageLimit": ANY,
            "availabilityZoneSelection": ANY,
            "secondaryCidrBlocks": NS,
            "ipamPool": NS,
            "ipv6": NS,
            "internetGatewayId": NS,
            "carrierGatewayId": NS,
            "tags": NS,
            "emptyRoutesDefaultVPCSecurityGroup": NS,
            "privateDnsHostnameTypeOnLaunch": NS,
            "elasticIpPool": NS,
            "subnetSchema": NS,
        },
        "subnets": ListOf(
            {
                "id": ANY,
                "resourceID": ANY,
                "cidrBlock": ANY,
                "availabilityZone": ANY,
                "isPublic": ANY,
                "ipv6CidrBlock": NS,
                "isIpv6": NS,
                "routeTableId": NS,
                "natGatewayId": NS,
                "tags": NS,
                "zoneType": NS,
                "parentZoneName": NS,
            }
        ),
        "cni": {
            "cniIngressRules": ListOf({"description": ANY, "protocol": ANY, "fromPort": ANY, "toPort": ANY})
        },
        "securityGroupOverrides": NS,
        "additionalControlPlaneIngressRules": NS,
        "additionalNodeIngressRules": NS,
        "nodePortIngressRuleCidrBlocks": NS,
    },
    "region": ANY,
    "partition": NS,
    "sshKeyName": ANY,
    "controlPlaneEndpoint": {"host": ANY, "port": ANY},
    "additionalTags": FREE,
    "controlPlaneLoadBalancer": {
        "name": ANY,
        "scheme": ANY,
        "crossZoneLoadBalancing": ANY,
        "healthCheckProtocol": ANY,
        "additionalSecurityGroups": ANY,
        "ingressRules": ListOf(_INGRESS_RULE_V1BETA2),
        "loadBalancerType": ANY,
        "subnets": NS,
        "healthCheck": NS,
        "additionalListeners": NS,
        "disableHostsRewrite": NS,
        "preserveClientIP": NS,
        "targetGroupIPType": NS,
        "dnsResolutionCheck": NS,
    },
    "secondaryControlPlaneLoadBalancer": NS,
    "imageLookupFormat": ANY,
    "imageLookupOrg": ANY,
    "imageLookupBaseOS": ANY,
    "bastion": {
        "enabled": ANY,
        "allowedCIDRBlocks": ANY,
        "instanceType": ANY,
        "ami": ANY,
        "disableIngressRules": NS,
    },
    "identityRef": NotSupported("capt uses the worker's AWS credentials"),
    "s3Bucket": NS,
}


_AWS_CLUSTER_V1BETA1 = _with(
    _AWS_CLUSTER_V1BETA2,
    {
        "network.vpc": {
            "id": ANY,
            "cidrBlock": ANY,
            "availabilityZoneUsageLimit": ANY,
            "availabilityZoneSelection": ANY,
            "ipv6": NS,
            "internetGatewayId": NS,
            "tags": NS,
        },
        "network.subnets.resourceID": None,
        "network.subnets.zoneType": None,
        "network.subnets.parentZoneName": None,
        "network.additionalControlPlaneIngressRules": None,
        "network.additionalNodeIngressRules": None,
        "network.nodePortIngressRuleCidrBlocks": None,
        "partition": None,
        "controlPlaneLoadBalancer": {
            "name": ANY,
            "scheme": ANY,
            "crossZoneLoadBalancing": ANY,
            "healthCheckProtocol": ANY,
            "additionalSecurityGroups": ANY,
            "subnets": NS,
        },
        "secondaryControlPlaneLoadBalancer": None,
    },
)


_AWS_CLUSTER_V1ALPHA4 = _with(
    _AWS_CLUSTER_V1BETA1,
    {
        "network.vpc.ipv6": None,
        "network.subnets.ipv6CidrBlock": None,
        "network.subnets.isIpv6": None,
        "controlPlaneLoadBalancer.name": None,
        "controlPlaneLoadBalancer.healthCheckProtocol": None,
        "s3Bucket": None,
    },
)


_AWS_CLUSTER_V1ALPHA3 = _with(_AWS_CLUSTER_V1ALPHA4, {"network": None})


_AWS_CLUSTER_V1ALPHA3["networkSpec"] = copy.deepcopy(_AWS_CLUSTER_V1ALPHA4["network"])


_AWS_MACHINE_V1BETA2 = {
    "ami": {"id": ANY, "eksLookupType": NS},
    "imageLookupFormat": ANY,
    "imageLookupOrg": ANY,
    "imageLookupBaseOS": ANY,
    "instanceType": ANY,
    "additionalTags": FREE,
    "iamInstanceProfile": ANY,
    "publicIP": ANY,
    # The reader says "by id only" for an entry without an id.
    "additionalSecurityGroups": ListOf({"id": ANY, "filters": ANY}),
    "subnet": {"id": ANY, "filters": NS},
    "sshKeyName": ANY,
    "rootVolume": {
        "size": ANY,
        "type": ANY,
        "iops": ANY,
        "throughput": ANY,
        "encrypted": ANY,
        "deviceName": NS,
        "encryptionKey": NS,
    },
    "instanceMetadataOptions": {
        "httpTokens": ANY,
        "httpPutResponseHopLimit": ANY,
        "httpEndpoint": NS,
        "httpProtocolIpv6": NS,
        "instanceMetadataTags": NS,
    },
    "spotMarketOptions": {"maxPrice": NS},
    "providerID": NS,
    "instanceID": NS,
    "cpuOptions": NS,
    "elasticIpPool": NS,
    "securityGroupOverrides": NS,
    "nonRootVolumes": NS,
    "networkInterfaces": NS,
    "networkInterfaceType": NS,
    "assignPrimaryIPv6": NS,
    "uncompressedUserData": NS,
    "cloudInit": NS,
    "ignition": NS,
    "placementGroupName": NS,
    "placementGroupPartition": NS,
    "tenancy": NS,
    "privateDnsName": NS,
    "capacityReservationId": NS,
    "marketType": NS,
    "hostID": NS,
    "hostAffinity": NS,
    "dynamicHostAllocation": NS,
    "capacityReservationPreference": NS,
}


_AWS_MACHINE_V1BETA1 = _with(
    _AWS_MACHINE_V1BETA2,
    {
        "additionalSecurityGroups": ListOf({"id": ANY, "arn": ANY, "filters": ANY}),
        "subnet": {"id": ANY, "arn": NS, "filters": NS},
        "failureDomain": NotSupported("set spec.template.spec.failureDomain of the MachineDeployment"),
        # instanceMetadataOptions stays in every version: capt reads it there (IMDSv2 settings
        # matter for older manifests too; docs/security.md).
        "cpuOptions": None,
        "elasticIpPool": None,
        "securityGroupOverrides": None,
        "networkInterfaceType": None,
        "assignPrimaryIPv6": None,
        "placementGroupName": None,
        "placementGroupPartition": None,
        "privateDnsName": None,
        "capacityReservationId": None,
        "marketType": None,
        "hostID": None,
        "hostAffinity": None,
        "dynamicHostAllocation": None,
        "capacityReservationPreference": None,
    },
)


_AWS_MACHINE_V1ALPHA4 = _with(_AWS_MACHINE_V1BETA1, {"ignition": None})


_AWS_MACHINE_V1ALPHA3 = _with(
    _AWS_MACHINE_V1ALPHA4,
    {"ami": {"id": ANY, "arn": NS, "filters": NS}, "rootVolume.throughput": None},
)


def _machine_template(spec: dict, metadata: bool = True) -> dict:
    template: dict = {"spec": spec}
    if metadata:
        template["metadata"] = TEMPLATE_META
    return _object({"template": template})
