"""CAPA kinds: AWSCluster and AWSMachineTemplate, across v1alpha3 … v1beta2."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from capt.spec import validation as v
from capt.spec.documents import Doc
from capt.spec.models import (
    AMISelector,
    BastionSpec,
    IngressRule,
    LoadBalancerSpec,
    MachineTemplate,
    RootVolume,
    SubnetSpec,
)

LOAD_BALANCER_TYPES = {"classic": "classic", "elb": "classic", "nlb": "nlb"}


@dataclass
class AWSClusterDoc:
    doc: Doc
    region: str | None
    ssh_key_name: str | None
    network: dict  # NetworkSpec fields (pod/service CIDRs are added from the Cluster)
    load_balancer: LoadBalancerSpec
    bastion: BastionSpec
    additional_tags: dict[str, str]
    endpoint_host: str | None
    endpoint_port: int | None
    ami_defaults: dict[str, str]


def read_aws_cluster(doc: Doc) -> AWSClusterDoc:
    # v1alpha3 calls it spec.networkSpec; v1alpha4 and later spec.network.
    net = (
        "spec.networkSpec" if doc.has("spec.networkSpec") and not doc.has("spec.network") else "spec.network"
    )
    network: dict = {}
    if cidr := doc.str(f"{net}.vpc.cidrBlock"):
        network["vpc_cidr"] = cidr
    if vpc_id := doc.str(f"{net}.vpc.id"):
        network["vpc_id"] = vpc_id
    limit = doc.int(f"{net}.vpc.availabilityZoneUsageLimit", minimum=1)
    if limit is not None:
        network["availability_zone_usage_limit"] = limit
    selection = doc.str(f"{net}.vpc.availabilityZoneSelection")
    if selection is not None:
        if selection in ("Ordered", "Random"):
            network["availability_zone_selection"] = selection
        else:
            doc.problem(
                f"{net}.vpc.availabilityZoneSelection", f"must be Ordered or Random, got {selection!r}"
            )
    subnets = []
    for i, raw in enumerate(doc.list(f"{net}.subnets")):
        path = f"{net}.subnets[{i}]"
        if not isinstance(raw, dict):
            doc.problem(path, "must be a mapping")
            continue
        subnet_id = raw.get("resourceID") or raw.get("id")
        if not subnet_id and not raw.get("cidrBlock"):
            doc.problem(path, "needs an id (existing subnet) or a cidrBlock")
            continue
        subnets.append(
            SubnetSpec(
                id=subnet_id or None,
                cidr_block=raw.get("cidrBlock"),
                availability_zone=raw.get("availabilityZone"),
                is_public=bool(raw.get("isPublic", False)),
            )
        )
    if subnets:
        network["subnets"] = tuple(subnets)
    if doc.has(f"{net}.cni.cniIngressRules"):
        rules = []
        for i, raw in enumerate(doc.list(f"{net}.cni.cniIngressRules")):
            path = f"{net}.cni.cniIngressRules[{i}]"
            try:
                rules.append(
                    IngressRule(
                        description=str(raw.get("description", "")),
                        protocol=str(raw["protocol"]),
                        from_port=int(raw["fromPort"]),
                        to_port=int(raw["toPort"]),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                doc.problem(path, "needs protocol, fromPort and toPort")
        network["cni_ingress_rules"] = tuple(rules)

    lb_path = "spec.controlPlaneLoadBalancer"
    lb: dict = {}
    lb_type = doc.str(f"{lb_path}.loadBalancerType")
    if lb_type is not None:
        if lb_type not in LOAD_BALANCER_TYPES:
            doc.problem(
                f"{lb_path}.loadBalancerType",
                f"{lb_type!r} is not supported (capt builds 'classic'/'elb' or 'nlb' API server load balancers)",
            )
        else:
            lb["type"] = LOAD_BALANCER_TYPES[lb_type]
    scheme = doc.str(f"{lb_path}.scheme")
    if scheme is not None:
        if scheme in ("internet-facing", "internal"):
            lb["scheme"] = scheme
        else:
            doc.problem(f"{lb_path}.scheme", f"must be internet-facing or internal, got {scheme!r}")
    if (name := doc.str(f"{lb_path}.name")) is not None:
        lb["name"] = name
    hc = doc.str(f"{lb_path}.healthCheckProtocol")
    if hc is not None:
        if hc.upper() in ("TCP", "HTTP", "HTTPS", "SSL"):
            lb["health_check_protocol"] = hc.upper()
        else:
            doc.problem(f"{lb_path}.healthCheckProtocol", f"must be TCP, HTTP, HTTPS or SSL, got {hc!r}")
    if doc.has(f"{lb_path}.crossZoneLoadBalancing"):
        lb["cross_zone"] = doc.bool(f"{lb_path}.crossZoneLoadBalancing", True)
    ingress: list[str] = []
    for i, rule in enumerate(doc.list(f"{lb_path}.ingressRules")):
        if isinstance(rule, dict):
            ingress += [str(c) for c in rule.get("cidrBlocks") or []]
        else:
            doc.problem(f"{lb_path}.ingressRules[{i}]", "must be a mapping")
    if ingress:
        lb["ingress_cidrs"] = tuple(ingress)
    extra_sgs = [
        str(g.get("id"))
        for g in doc.list(f"{lb_path}.additionalSecurityGroups")
        if isinstance(g, dict) and g.get("id")
    ] + [g for g in doc.list(f"{lb_path}.additionalSecurityGroups") if isinstance(g, str)]
    if extra_sgs:
        lb["additional_security_groups"] = tuple(extra_sgs)

    bastion: dict = {"enabled": doc.bool("spec.bastion.enabled", False)}
    if doc.has("spec.bastion.allowedCIDRBlocks"):
        bastion["allowed_cidrs"] = tuple(doc.str_list("spec.bastion.allowedCIDRBlocks"))
    if t := doc.str("spec.bastion.instanceType"):
        bastion["instance_type"] = t
    if ami := doc.str("spec.bastion.ami"):
        bastion["ami"] = ami

    ami_defaults = {}
    for field, key in (
        ("imageLookupFormat", "lookup_format"),
        ("imageLookupOrg", "lookup_org"),
        ("imageLookupBaseOS", "lookup_base_os"),
    ):
        if (v := doc.str(f"spec.{field}")) is not None:
            ami_defaults[key] = v

    port = doc.int("spec.controlPlaneEndpoint.port", minimum=0)
    return AWSClusterDoc(
        doc=doc,
        region=doc.str("spec.region", required=True),
        ssh_key_name=doc.str("spec.sshKeyName") or None,
        network=network,
        load_balancer=_build(doc, lb_path, LoadBalancerSpec, lb) or LoadBalancerSpec(),
        bastion=_build(doc, "spec.bastion", BastionSpec, bastion) or BastionSpec(),
        additional_tags=_tags(doc, "spec.additionalTags"),
        endpoint_host=doc.str("spec.controlPlaneEndpoint.host") or None,
        endpoint_port=port or None,
        ami_defaults=ami_defaults,
    )


def _tags(doc: Doc, path: str) -> dict[str, str]:
    """User tags, checked against AWS's and capt's rules (capt/spec/validation.py)."""
    tags = doc.str_map(path)
    for key, err in v.tags_errors(tags):
        doc.problem(f"{path}.{key}" if key else path, err)
    return tags


def read_aws_machine_template(doc: Doc, ami_defaults: dict[str, str]) -> MachineTemplate | None:
    s = "spec.template.spec"
    instance_type = doc.str(f"{s}.instanceType", required=True)
    ami: dict = dict(ami_defaults)
    if ami_id := doc.str(f"{s}.ami.id"):
        ami["id"] = ami_id
    for field, key in (
        ("imageLookupFormat", "lookup_format"),
        ("imageLookupOrg", "lookup_org"),
        ("imageLookupBaseOS", "lookup_base_os"),
    ):
        if (v := doc.str(f"{s}.{field}")) is not None:
            ami[key] = v
    volume: dict = {}
    if (size := doc.int(f"{s}.rootVolume.size", minimum=8)) is not None:
        volume["size_gib"] = size
    if (vtype := doc.str(f"{s}.rootVolume.type")) is not None:
        volume["type"] = vtype
    if doc.has(f"{s}.rootVolume.encrypted"):
        volume["encrypted"] = doc.bool(f"{s}.rootVolume.encrypted", True)
    if (iops := doc.int(f"{s}.rootVolume.iops", minimum=0)) is not None:
        volume["iops"] = iops
    if (tp := doc.int(f"{s}.rootVolume.throughput", minimum=0)) is not None:
        volume["throughput"] = tp
    fields: dict = {
        "name": doc.name,
        "instance_type": instance_type or "",
        "ami": _build(doc, f"{s}.ami", AMISelector, ami) or AMISelector(),
        "root_volume": _build(doc, f"{s}.rootVolume", RootVolume, volume) or RootVolume(),
        "iam_instance_profile": doc.str(f"{s}.iamInstanceProfile") or None,
        "ssh_key_name": doc.str(f"{s}.sshKeyName") or None,
        "public_ip": doc.bool(f"{s}.publicIP", False),
        "subnet_id": doc.str(f"{s}.subnet.id") or None,
        "additional_tags": tuple(sorted(_tags(doc, f"{s}.additionalTags").items())),
        "spot": doc.has(f"{s}.spotMarketOptions"),
    }
    groups = []
    for i, g in enumerate(doc.list(f"{s}.additionalSecurityGroups")):
        if isinstance(g, dict) and g.get("id"):
            groups.append(str(g["id"]))
        else:
            doc.problem(f"{s}.additionalSecurityGroups[{i}]", "capt supports security groups by id only")
    fields["additional_security_groups"] = tuple(groups)
    tokens = doc.str(f"{s}.instanceMetadataOptions.httpTokens")
    if tokens is not None:
        if tokens in ("required", "optional"):
            fields["http_tokens"] = tokens
        else:
            doc.problem(
                f"{s}.instanceMetadataOptions.httpTokens", f"must be required or optional, got {tokens!r}"
            )
    hop = doc.int(f"{s}.instanceMetadataOptions.httpPutResponseHopLimit", minimum=1)
    if hop is not None and hop > 64:
        # EC2's range for the PUT response hop limit.
        doc.problem(f"{s}.instanceMetadataOptions.httpPutResponseHopLimit", f"must be 1 to 64, got {hop}")
    elif hop is not None:
        fields["http_put_response_hop_limit"] = hop
    return _build(doc, s, MachineTemplate, fields)


def _build(doc: Doc, path: str, model, fields: dict):
    try:
        return model(**fields)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            doc.problem(f"{path}.{loc}" if loc else path, err["msg"])
        return None
