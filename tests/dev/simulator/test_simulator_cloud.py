"""simulator.cloud_controllers: the simulated cluster's AWS cloud-controller-manager (classic ELBs
for LoadBalancer Services) and EBS CSI driver (volumes for PVCs) against in-process moto, with
upstream's names, tags, security-group rule and order; and the ccm-down/csi-down knobs."""

from __future__ import annotations

import logging

import pytest

from capt.dev.simulator.cloud_controllers import core as cc_core
from capt.dev.simulator.cloud_controllers import load_balancers as cc_lb
from capt.dev.simulator.cloud_controllers import names as cc_names
from capt.dev.simulator.cloud_controllers import work as cc_work
from capt.dev.simulator.cloud_controllers.names import CloudOptions
from capt.dev.simulator.cloud_controllers.work import Target
from tests.support.sim_cloud import (
    ZONES,
    CloudSim,
    ebs_csi_controller,
    lb_service,
    pod_with_claim,
    pvc,
    storage_class,
)

SVC = "/api/v1/namespaces/default/services"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def elb_tags(cs: CloudSim, name: str) -> dict[str, str]:
    desc = cs.elb.describe_tags(LoadBalancerNames=[name])["TagDescriptions"][0]
    return tags_of(desc)


def group(cs: CloudSim, group_id: str) -> dict:
    return cs.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def groups_named(cs: CloudSim, prefix: str) -> list[dict]:
    return [
        g for g in cs.ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"].startswith(prefix)
    ]


def referencing(cs: CloudSim, group_id: str) -> list[str]:
    found = cs.ec2.describe_security_groups(
        Filters=[{"Name": "ip-permission.group-id", "Values": [group_id]}]
    )
    return [g["GroupName"] for g in found["SecurityGroups"]]


def load_balancers(cs: CloudSim) -> dict[str, dict]:
    return {lb["LoadBalancerName"]: lb for lb in cs.elb.describe_load_balancers()["LoadBalancerDescriptions"]}


def csi_volumes(cs: CloudSim) -> dict[str, dict]:
    """The volumes the driver made (instances' root volumes left out), by their PV name."""
    return {
        tags_of(v)["CSIVolumeName"]: v
        for v in cs.ec2.describe_volumes()["Volumes"]
        if "CSIVolumeName" in tags_of(v)
    }


# --------------------------------------------------------------------------------------------
# pure parts


def test_names_and_sizes() -> None:
    assert (
        cc_names.load_balancer_name("3f1c2d4e-aaaa-bbbb-cccc-0123456789ab")
        == "a3f1c2d4eaaaabbbbcccc0123456789a"
    )
    assert len(cc_names.load_balancer_name("3f1c2d4e-aaaa-bbbb-cccc-0123456789ab")) == 32
    assert (
        cc_names.elb_security_group_description("a1", "web", "front")
        == "Security group for Kubernetes ELB a1 (web/front)"
    )
    assert [cc_names.size_gib(q) for q in ("4Gi", "1", "1500Mi", "10G", None, "junk")] == [4, 1, 2, 10, 1, 1]
    assert (
        cc_work.pv_volume_id({"spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}})
        == "vol-1"
    )
    assert (
        cc_work.pv_volume_id({"spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1a/vol-2"}}})
        == "vol-2"
    )
    assert cc_work.pv_volume_id({"spec": {"awsElasticBlockStore": {"volumeID": "vol-3"}}}) == "vol-3"
    assert (
        cc_work.pv_volume_id({"spec": {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}}}) is None
    )


def test_cluster_id_from_the_instance_tags_as_the_ccm_reads_it() -> None:
    assert cc_names.cluster_id_from_tags(("team-a.prod",), "") == (cc_names.Tagging("team-a.prod"), "")
    assert cc_names.cluster_id_from_tags((), "old") == (cc_names.Tagging("old", legacy=True), "")
    assert cc_names.cluster_id_from_tags((), "")[1] == "AWS cloud failed to find ClusterID"
    assert "multiple cluster tags" in cc_names.cluster_id_from_tags(("a", "b"), "")[1]
    assert "did not match" in cc_names.cluster_id_from_tags(("a",), "b")[1]
    legacy = cc_names.Tagging("old", legacy=True)
    assert legacy.build() == {"KubernetesCluster": "old", "kubernetes.io/cluster/old": "owned"}
    assert legacy.has_cluster_tag({"KubernetesCluster": "old"}) and not legacy.has_cluster_tag({})


def test_instance_group_choice_follows_find_security_group_for_instance() -> None:
    assert cc_lb._group_for_instance(Target("i-1", ("sg-node",)), set()) == "sg-node"  # the only one
    assert (
        cc_lb._group_for_instance(Target("i-1", ("sg-node", "sg-lb")), {"sg-lb"}) == "sg-lb"
    )  # the tagged one
    with pytest.raises(ValueError, match="Multiple untagged"):
        cc_lb._group_for_instance(Target("i-1", ("sg-a", "sg-b")), set())
    with pytest.raises(ValueError, match="Multiple tagged"):
        cc_lb._group_for_instance(Target("i-1", ("sg-a", "sg-b")), {"sg-a", "sg-b"})


def test_volume_tags_follow_the_driver_flags() -> None:
    base = cc_names.volume_tags(cc_names.CsiConfig(extra_create_metadata=False), "pvc-1", "ns", "data")
    assert base == {"CSIVolumeName": "pvc-1", "ebs.csi.aws.com/cluster": "true"}
    full = cc_names.volume_tags(cc_names.CsiConfig(cluster_id="team-a.prod"), "pvc-1", "ns", "data")
    assert full == {
        "CSIVolumeName": "pvc-1",
        "ebs.csi.aws.com/cluster": "true",
        "kubernetes.io/created-for/pvc/name": "data",
        "kubernetes.io/created-for/pvc/namespace": "ns",
        "kubernetes.io/created-for/pv/name": "pvc-1",
        "kubernetes.io/cluster/team-a.prod": "owned",
        "Name": "team-a.prod-dynamic-pvc-1",
        "KubernetesCluster": "team-a.prod",
        "ebs.csi.aws.com/cluster-name": "team-a.prod",
    }


# --------------------------------------------------------------------------------------------
# the cloud-controller-manager


def test_load_balancer_services_get_classic_elbs_with_upstreams_names_tags_and_rule(aws: None) -> None:
    cs = CloudSim(cluster_id="team-a.prod")  # the id comes from the instances' tag, not the name
    web = cs.apply(lb_service("web", ports=(80, 443)))
    api = cs.apply(lb_service("api", ports=(8080,)))
    cs.run(1)
    lbs = load_balancers(cs)
    names = {s["metadata"]["name"]: cc_names.load_balancer_name(s["metadata"]["uid"]) for s in (web, api)}
    assert set(lbs) == set(names.values())
    for svc, ports in ((web, (80, 443)), (api, (8080,))):
        name = names[svc["metadata"]["name"]]
        lb = lbs[name]
        assert name == ("a" + svc["metadata"]["uid"].replace("-", ""))[:32]
        assert elb_tags(cs, name) == {
            "kubernetes.io/service-name": f"default/{svc['metadata']['name']}",
            "kubernetes.io/cluster/team-a.prod": "owned",
        }
        # One public subnet per zone, never a private one.
        assert sorted(lb["Subnets"]) == sorted(cs.net.public.values())
        node_ports = {p["port"]: p["nodePort"] for p in svc["spec"]["ports"]}
        assert {
            (d["Listener"]["LoadBalancerPort"], d["Listener"]["InstancePort"])
            for d in lb["ListenerDescriptions"]
        } == {(p, node_ports[p]) for p in ports}
        assert lb["HealthCheck"]["Target"] == f"TCP:{node_ports[ports[0]]}"
        # Workers only: kubeadm labels the control plane exclude-from-external-load-balancers.
        assert {i["InstanceId"] for i in lb["Instances"]} == {w.instance_id for w in cs.workers}
        (group_id,) = lb["SecurityGroups"]
        sg = group(cs, group_id)
        assert sg["GroupName"] == f"k8s-elb-{name}"
        assert (
            sg["Description"]
            == f"Security group for Kubernetes ELB {name} (default/{svc['metadata']['name']})"
        )
        assert tags_of(sg) == {"kubernetes.io/cluster/team-a.prod": "owned"}
        assert {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")) for p in sg["IpPermissions"]} == {
            ("tcp", p, p) for p in ports
        } | {("icmp", 3, 4)}
        # The rule on the workers' (only, untagged) group that references the ELB's group.
        assert referencing(cs, group_id) == ["team-a.prod-node"]
        got = cs.get(f"{SVC}/{svc['metadata']['name']}")
        assert got["metadata"]["finalizers"] == ["service.kubernetes.io/load-balancer-cleanup"]
        assert got["status"]["loadBalancer"]["ingress"] == [{"hostname": lb["DNSName"]}]
    assert cs.cluster.cloud["cluster_id"] == "team-a.prod"
    assert cs.cluster.cloud["load_balancers"] == {f"default/{k}": v for k, v in names.items()}
    # A steady state costs no AWS call.
    before = dict(cs.aws.calls)
    cs.run(2)
    assert cs.aws.calls == before


def test_deleting_a_service_removes_rule_elb_and_group_then_the_finalizer(aws: None) -> None:
    cs = CloudSim()
    web = cs.apply(lb_service("web"))
    keep = cs.apply(lb_service("keep"))
    cs.run(1)
    name = cc_names.load_balancer_name(web["metadata"]["uid"])
    group_id = load_balancers(cs)[name]["SecurityGroups"][0]
    deleted = cs.call("DELETE", f"{SVC}/web")
    assert deleted.status == 200 and deleted.body["metadata"]["deletionTimestamp"]  # held by the finalizer
    cs.run(1)
    assert cs.get(f"{SVC}/web") is None
    assert set(load_balancers(cs)) == {cc_names.load_balancer_name(keep["metadata"]["uid"])}
    assert not groups_named(cs, f"k8s-elb-{name}") and referencing(cs, group_id) == []
    assert (
        len(
            referencing(
                cs,
                load_balancers(cs)[cc_names.load_balancer_name(keep["metadata"]["uid"])]["SecurityGroups"][0],
            )
        )
        == 1
    )
    # A Service that stops being a LoadBalancer loses its ELB and finalizer, and stays.
    cs.apply({**lb_service("keep"), "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})
    cs.run(1)
    assert load_balancers(cs) == {} and groups_named(cs, "k8s-elb-") == []
    got = cs.get(f"{SVC}/keep")
    assert "finalizers" not in got["metadata"] and got["status"] == {"loadBalancer": {}}


def test_ccm_down_keeps_load_balancers_and_deleted_services(aws: None) -> None:
    cs = CloudSim()
    cs.apply(lb_service("web"))
    cs.run(1)
    cs.sim.world.set_fault("ccm-down", cs.cluster_id)
    cs.apply(lb_service("late"))
    assert cs.call("DELETE", f"{SVC}/web").status == 200
    cs.run(3)
    assert len(load_balancers(cs)) == 1 and len(groups_named(cs, "k8s-elb-")) == 1
    assert cs.get(f"{SVC}/web")["metadata"]["deletionTimestamp"]  # Terminating, as without a CCM
    assert cs.get(f"{SVC}/late")["status"] == {"loadBalancer": {}}
    assert cs.cluster.cloud["ccm"] == "down"
    cs.sim.world.set_fault("ccm-down", cs.cluster_id, enabled=False)
    cs.run(1)
    assert cs.get(f"{SVC}/web") is None
    assert [lb["LoadBalancerName"] for lb in load_balancers(cs).values()] == [
        cc_names.load_balancer_name(cs.get(f"{SVC}/late")["metadata"]["uid"])
    ]


def test_a_new_worker_is_registered_and_the_tagged_lb_group_wins_over_the_node_group(aws: None) -> None:
    cs = CloudSim(workers=1)
    web = cs.apply(lb_service("web"))
    cs.run(1)
    name = cc_names.load_balancer_name(web["metadata"]["uid"])
    # A worker that (as CAPA does) also carries the cluster-tagged <id>-lb group.
    token = cs.sim.new_token()
    cs.sim.token_secret(token)
    instance = cs.ec2.run_instances(
        ImageId=cs.image,
        InstanceType="t3.large",
        MinCount=1,
        MaxCount=1,
        SubnetId=cs.net.private[ZONES[1]],
        SecurityGroupIds=[cs.net.groups["node"], cs.net.groups["lb"]],
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "sigs.k8s.io/cluster-api-provider-aws/cluster/capi-quickstart", "Value": "owned"},
                    {"Key": "kubernetes.io/cluster/capi-quickstart", "Value": "owned"},
                    {"Key": "sigs.k8s.io/cluster-api-provider-aws/role", "Value": "node"},
                    {"Key": "capt/machine", "Value": "md-0-x"},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]
    v = cs.view(instance)
    cs.sim.bootstrap(v, "join-worker", token=token)
    cs.sim.views[instance] = v
    cs.run(4)
    lb = load_balancers(cs)[name]
    assert {i["InstanceId"] for i in lb["Instances"]} == {cs.workers[0].instance_id, instance}
    assert sorted(referencing(cs, lb["SecurityGroups"][0])) == ["capi-quickstart-lb", "capi-quickstart-node"]


def test_no_cluster_tag_on_the_control_plane_means_no_ccm(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    cs = CloudSim()
    # The control plane's instance as seen without its kubernetes.io/cluster tag.
    from dataclasses import replace

    cs.sim.views[cs.cp.instance_id] = replace(cs.cp, cloud_cluster_ids=())
    cs.apply(lb_service("web"))
    with caplog.at_level(logging.WARNING, "capt.simulator"):
        cs.run(1)
    assert load_balancers(cs) == {} and "finalizers" not in cs.get(f"{SVC}/web")["metadata"]
    assert cs.cluster.cloud["ccm"] == "not started"
    assert any("AWS cloud failed to find ClusterID" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------
# the EBS CSI driver


def test_pvcs_get_volumes_and_bound_pvs_with_the_driver_tags(aws: None) -> None:
    cs = CloudSim(cluster_id="team-a.prod")
    cs.apply(ebs_csi_controller("--k8s-tag-cluster-id=team-a.prod"))
    cs.apply(storage_class("gp3", default=True, type="gp3", encrypted="true"))
    cs.apply(storage_class("legacy", "kubernetes.io/aws-ebs", type="gp2"))
    cs.apply(storage_class("wait", wait=True))
    cs.apply(storage_class("other", "example.com/nfs"))
    cs.apply(pvc("default-class", size="5Gi"))  # no class: the default one
    cs.apply(pvc("in-tree", size="1500Mi", storage_class_name="legacy"))
    cs.apply(pvc("waits", storage_class_name="wait"))
    cs.apply(pvc("not-ebs", storage_class_name="other"))
    cs.run(1)
    volumes = csi_volumes(cs)
    assert len(volumes) == 2  # the WaitForFirstConsumer claim waits for a pod
    cs.apply(pod_with_claim("consumer", "waits"))
    cs.run(2)
    volumes = csi_volumes(cs)
    assert len(volumes) == 3
    pvs = {pv["metadata"]["name"]: pv for pv in cs.get("/api/v1/persistentvolumes")["items"]}
    assert set(pvs) == set(volumes)
    for claim, size, vtype in (("default-class", 5, "gp3"), ("in-tree", 2, "gp2"), ("waits", 4, "gp3")):
        got = cs.get(f"{PVCS}/{claim}")
        pv_name = got["spec"]["volumeName"]
        assert pv_name == f"pvc-{got['metadata']['uid']}" and got["status"]["phase"] == "Bound"
        volume = volumes[pv_name]
        assert (volume["Size"], volume["VolumeType"]) == (size, vtype)
        assert tags_of(volume) == {
            "CSIVolumeName": pv_name,
            "ebs.csi.aws.com/cluster": "true",
            "kubernetes.io/created-for/pvc/name": claim,
            "kubernetes.io/created-for/pvc/namespace": "default",
            "kubernetes.io/created-for/pv/name": pv_name,
            "kubernetes.io/cluster/team-a.prod": "owned",
            "Name": f"team-a.prod-dynamic-{pv_name}",
            "KubernetesCluster": "team-a.prod",
            "ebs.csi.aws.com/cluster-name": "team-a.prod",
        }
        pv = pvs[pv_name]
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert pv["spec"]["claimRef"]["uid"] == got["metadata"]["uid"]
        assert cc_work.pv_volume_id(pv) == volume["VolumeId"]
        zone = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
        assert zone == [volume["AvailabilityZone"]]
    assert volumes[cs.get(f"{PVCS}/default-class")["spec"]["volumeName"]]["Encrypted"] is True
    legacy_pv = pvs[cs.get(f"{PVCS}/in-tree")["spec"]["volumeName"]]
    assert legacy_pv["spec"]["awsElasticBlockStore"]["volumeID"].startswith("aws://")
    assert legacy_pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kubernetes.io/aws-ebs"
    csi_pv = pvs[cs.get(f"{PVCS}/default-class")["spec"]["volumeName"]]
    assert csi_pv["spec"]["csi"]["volumeHandle"].startswith("vol-")
    # The consumer's volume is in its node's zone and attached to its instance.
    node = cs.cluster.nodes[cs.cluster.pods[("default", "consumer")].node_name]
    waits = volumes[cs.get(f"{PVCS}/waits")["spec"]["volumeName"]]
    assert waits["AvailabilityZone"] == node.labels["topology.kubernetes.io/zone"]
    assert [a["InstanceId"] for a in waits["Attachments"]] == [node.instance_id]
    assert cs.get(f"{PVCS}/not-ebs")["status"]["phase"] == "Pending"


def test_without_a_cluster_id_volumes_carry_no_cluster_tags_unless_the_simulator_is_told(aws: None) -> None:
    cs = CloudSim()
    cs.apply(storage_class("gp3", default=True))
    cs.apply(pvc("data"))
    cs.run(1)
    (volume,) = csi_volumes(cs).values()
    assert not any(
        k.startswith("kubernetes.io/cluster/") or k == "KubernetesCluster" for k in tags_of(volume)
    )
    told = CloudSim(cluster_id="team-b.prod", options=CloudOptions(csi_tag_cluster_id=True))
    told.apply(storage_class("gp3", default=True))
    told.apply(pvc("data"))
    told.run(1)
    (volume,) = [v for v in csi_volumes(told).values() if v["VolumeId"] != volume["VolumeId"]]
    assert tags_of(volume)["kubernetes.io/cluster/team-b.prod"] == "owned"
    assert tags_of(volume)["KubernetesCluster"] == "team-b.prod"


def test_a_pvc_in_use_waits_for_its_pod_then_volume_and_pv_go(aws: None) -> None:
    cs = CloudSim()
    cs.apply(storage_class("gp3", default=True))
    cs.apply(pvc("data"))
    cs.apply(pod_with_claim("user", "data"))
    cs.run(2)
    pv_name = cs.get(f"{PVCS}/data")["spec"]["volumeName"]
    volume_id = csi_volumes(cs)[pv_name]["VolumeId"]
    assert csi_volumes(cs)[pv_name]["State"] == "in-use"
    assert cs.call("DELETE", f"{PVCS}/data").status == 200
    cs.run(2)
    held = cs.get(f"{PVCS}/data")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == [
        "kubernetes.io/pvc-protection"
    ]
    assert cs.call("DELETE", "/api/v1/namespaces/default/pods/user").status == 200
    cs.run(3)
    assert cs.get(f"{PVCS}/data") is None
    assert cs.get(f"/api/v1/persistentvolumes/{pv_name}") is None
    assert volume_id not in {v["VolumeId"] for v in cs.ec2.describe_volumes()["Volumes"]}
    # A pod for a claim being deleted is never scheduled (it would hold the claim again).
    cs.apply(pvc("again"))
    cs.apply(pod_with_claim("holder", "again"))
    cs.run(2)
    cs.call("DELETE", f"{PVCS}/again")
    cs.apply(pod_with_claim("late", "again"))
    cs.run(1)
    assert cs.cluster.pods[("default", "late")].node_name is None
    cs.call("DELETE", "/api/v1/namespaces/default/pods/holder")
    cs.run(3)
    assert cs.get(f"{PVCS}/again") is None and cs.cluster.pods[("default", "late")].node_name is None


def test_csi_down_leaves_the_released_pv_and_its_volume(aws: None) -> None:
    cs = CloudSim()
    cs.apply(storage_class("gp3", default=True))
    cs.apply(pvc("data"))
    cs.run(1)
    pv_name = cs.get(f"{PVCS}/data")["spec"]["volumeName"]
    cs.sim.world.set_fault("csi-down", cs.cluster.name)
    cs.apply(pvc("late"))
    cs.call("DELETE", f"{PVCS}/data")
    cs.run(3)
    assert cs.get(f"{PVCS}/data") is None  # kube-controller-manager still lets the claim go
    pv = cs.get(f"/api/v1/persistentvolumes/{pv_name}")
    assert pv["status"]["phase"] == "Released" and pv_name in csi_volumes(cs)
    assert cs.get(f"{PVCS}/late")["status"]["phase"] == "Pending"
    cs.sim.world.set_fault("csi-down", cs.cluster.name, enabled=False)
    cs.run(1)
    assert cs.get(f"/api/v1/persistentvolumes/{pv_name}") is None and pv_name not in csi_volumes(cs)
    assert cs.get(f"{PVCS}/late")["status"]["phase"] == "Bound"


def test_two_services_and_three_pvcs_come_and_go_to_nothing(aws: None) -> None:
    cs = CloudSim()
    cs.apply(storage_class("gp3", default=True))
    for name in ("a", "b"):
        cs.apply(lb_service(name))
    for name in ("x", "y", "z"):
        cs.apply(pvc(name))
    cs.run(1)
    assert (len(load_balancers(cs)), len(groups_named(cs, "k8s-elb-")), len(csi_volumes(cs))) == (2, 2, 3)
    for name in ("a", "b"):
        cs.call("DELETE", f"{SVC}/{name}")
    for name in ("x", "y", "z"):
        cs.call("DELETE", f"{PVCS}/{name}")
    cs.run(2)
    assert (len(load_balancers(cs)), len(groups_named(cs, "k8s-elb-")), len(csi_volumes(cs))) == (0, 0, 0)
    assert referencing(cs, cs.net.groups["node"]) == []
    node = group(cs, cs.net.groups["node"])
    assert not any(p.get("UserIdGroupPairs") for p in node["IpPermissions"])
    assert cs.cluster.cloud["load_balancers"] == {} and cs.cluster.cloud["volumes"] == {}


def test_the_simulator_loop_runs_the_cloud_controllers_every_cloud_interval(aws: None) -> None:
    from capt.dev.simulator.app import Runner

    cs = CloudSim(workers=1)
    cs.apply(lb_service("web"))
    runner = Runner(cs.sim.world, cs.aws)
    runner.step()  # polls moto, ticks, and (first round) reconciles
    assert len(load_balancers(cs)) == 1
    cs.apply(lb_service("api"))
    runner.step()  # within cloud_interval: not yet
    assert len(load_balancers(cs)) == 1
    runner._last_cloud -= cs.sim.world.settings.cloud_interval
    runner.step()
    assert len(load_balancers(cs)) == 2


def test_a_volume_still_attached_after_a_restart_is_detached_before_it_is_deleted(aws: None) -> None:
    cs = CloudSim(workers=1)
    cs.apply(storage_class("gp3", default=True))
    cs.apply(pvc("data"))
    cs.apply(pod_with_claim("user", "data"))
    cs.run(2)
    pv_name = cs.get(f"{PVCS}/data")["spec"]["volumeName"]
    assert csi_volumes(cs)[pv_name]["State"] == "in-use"
    # A restarted simulator: its controllers remember no attachment, and the pod went meanwhile.
    cs.controllers = cc_core.CloudControllers(cs.sim.world, cs.aws)
    del cs.cluster.pods[("default", "user")]
    cs.call("DELETE", f"{PVCS}/data")
    cs.run(1)
    assert csi_volumes(cs)[pv_name]["State"] == "available"  # VolumeInUse: detached, retried later
    cs.run(6)  # the retry's backoff
    assert pv_name not in csi_volumes(cs) and cs.get(f"/api/v1/persistentvolumes/{pv_name}") is None
