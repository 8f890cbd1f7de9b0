"""capt/activities/workload/teardown.py: deleting the objects that hold AWS resources, against the
simulator's Kubernetes API over mutual TLS, whose CCM and EBS CSI driver run against in-process
moto — so a deletion is followed to the ELBs, groups and volumes actually going."""

from __future__ import annotations

import socket

import pytest
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import secrets as sm
from capt.activities.kubeadm import pki
from capt.activities.workload import client as wc
from capt.activities.workload import teardown as td
from capt.activities.workload import transport
from capt.activities.workload.activities import WorkloadAccess
from capt.activities.workload.objects import (
    default_load_balancer_name,
    ebs_volume_id,
    ebs_volume_zone,
    pod_claims,
)
from capt.dev.testkit import bootstrap_reference as ref
from tests.support.sim_cloud import CloudSim, lb_service, pod_with_claim, pvc, storage_class

SVC = "/api/v1/namespaces/default/services"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def workload(cs: CloudSim) -> None:
    """2 LoadBalancer Services and a ClusterIP one; claims of a Delete class (one mounted by a
    pod), of the in-tree class, of a Retain class and of a class that is not EBS."""
    cs.apply(storage_class("gp3", default=True))
    cs.apply(storage_class("legacy", "kubernetes.io/aws-ebs"))
    cs.apply({**storage_class("keep"), "reclaimPolicy": "Retain"})
    cs.apply(storage_class("nfs", "example.com/nfs"))
    cs.apply(lb_service("web"))
    cs.apply(lb_service("api", ports=(8080, 8443)))
    cs.apply({**lb_service("internal"), "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})
    cs.apply(pvc("data"))
    cs.apply(pvc("old", storage_class_name="legacy"))
    cs.apply(pvc("kept", storage_class_name="keep"))
    cs.apply(pvc("shared", storage_class_name="nfs"))
    cs.apply(pod_with_claim("db", "data"))
    cs.apply(pod_with_claim("nfs-user", "shared"))
    cs.run(2)


def elbs(cs: CloudSim) -> set[str]:
    return {lb["LoadBalancerName"] for lb in cs.elb.describe_load_balancers()["LoadBalancerDescriptions"]}


def volumes(cs: CloudSim) -> set[str]:
    return {
        v["VolumeId"]
        for v in cs.ec2.describe_volumes()["Volumes"]
        if any(t["Key"] == "CSIVolumeName" for t in v.get("Tags") or [])
    }


def elb_groups(cs: CloudSim) -> list[str]:
    return [
        g["GroupName"]
        for g in cs.ec2.describe_security_groups()["SecurityGroups"]
        if g["GroupName"].startswith("k8s-elb-")
    ]


# --------------------------------------------------------------------------------------------
# pure parts


def test_volume_ids_zones_and_claims_from_objects() -> None:
    csi = {
        "spec": {
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0123456789abcdef0"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "topology.ebs.csi.aws.com/zone", "values": ["us-east-1b"]}
                            ]
                        }
                    ]
                }
            },
        }
    }
    assert (ebs_volume_id(csi), ebs_volume_zone(csi)) == ("vol-0123456789abcdef0", "us-east-1b")
    legacy = {"spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1a/vol-0aaa"}}}
    assert (ebs_volume_id(legacy), ebs_volume_zone(legacy)) == ("vol-0aaa", "eu-west-1a")
    assert ebs_volume_id({"spec": {"awsElasticBlockStore": {"volumeID": "vol-0bbb"}}}) == "vol-0bbb"
    assert ebs_volume_id({"spec": {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}}}) is None
    assert ebs_volume_id({"spec": {"hostPath": {"path": "/x"}}}) is None
    pod = {
        "metadata": {"name": "web-0"},
        "spec": {
            "volumes": [
                {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}},
                {"name": "cfg", "configMap": {"name": "c"}},
            ]
        },
    }
    assert pod_claims(pod) == ("data", "web-0-scratch")
    assert (
        default_load_balancer_name("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
        == "a0a1b2c3d4e5f6789abcdef012345678"
    )


class FakeClient:
    """Lists fixed objects; every DELETE answers 404 (deleted by someone else in between)."""

    def __init__(self, objects: dict[str, list[dict]]) -> None:
        self.objects = objects
        self.deletes: list[tuple] = []

    def list_all(self, group_version: str, plural: str, **_: object) -> list[dict]:
        return self.objects.get(plural, [])

    def delete_object(self, group_version: str, plural: str, name: str, namespace: str | None = None):
        self.deletes.append((plural, namespace, name))
        return None


def test_an_object_gone_before_its_delete_is_done_not_pending() -> None:
    svc = lb_service("web")
    svc["metadata"]["uid"] = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    fake = FakeClient({"services": [svc]})
    result = td.delete_pass(fake)  # type: ignore[arg-type]
    assert fake.deletes == [("services", "default", "web")]
    assert (result.deleted, result.services, result.pending, result.done) == ((), (), 0, True)
    assert result.load_balancer_names == ("a0a1b2c3d4e5f6789abcdef012345678",)  # still learned


# --------------------------------------------------------------------------------------------
# against the simulator


def test_delete_then_poll_until_the_cloud_resources_are_gone(aws: None) -> None:
    cs = CloudSim(cluster_id="team-a.prod")
    workload(cs)
    lbs_before, volumes_before = elbs(cs), volumes(cs)
    assert len(lbs_before) == 2 and len(volumes_before) == 3
    kept_volume = ebs_volume_id(
        cs.get(f"/api/v1/persistentvolumes/{cs.get(f'{PVCS}/kept')['spec']['volumeName']}")
    )
    with cs.served() as port, cs.client(port) as client:
        before = td.list_pass(client)
        assert before.load_balancer_names == tuple(sorted(lbs_before)) and not before.done
        first = td.delete_pass(client)
        deleted = {(r.kind, r.name) for r in first.deleted}
        assert deleted == {
            ("Service", "web"),
            ("Service", "api"),
            ("PersistentVolumeClaim", "data"),
            ("PersistentVolumeClaim", "old"),
            ("Pod", "db"),  # it holds "data"; nfs-user holds a claim that is not AWS's
        }
        # What it learned, for the sweep: every name and id.
        assert first.load_balancer_names == tuple(sorted(lbs_before))
        assert set(first.load_balancer_hostnames) == {
            lb["DNSName"] for lb in cs.elb.describe_load_balancers()["LoadBalancerDescriptions"]
        }
        assert set(first.volume_ids) == volumes_before - {kept_volume}
        assert first.retained_volume_ids == (kept_volume,)
        data = next(c for c in first.claims if c.name == "data")
        assert data.deleting and data.pods == ("default/db",) and data.volume_id in first.volume_ids
        assert {c.name for c in first.claims} == {"data", "old"}  # kept (Retain) and shared (nfs) are not
        assert first.pending == 2 + 2 + 2 and not first.done
        # A retry (as after a lost response) deletes nothing again.
        retry = td.delete_pass(client)
        assert retry.deleted == () and retry.pending == first.pending
        polls = 0
        while not (state := td.list_pass(client)).done:
            polls += 1
            assert polls < 20, state
            cs.run(1)
    assert elbs(cs) == set() and elb_groups(cs) == []
    assert volumes(cs) == {kept_volume}  # the Retain volume stays, as Kubernetes leaves it
    assert state.volume_ids == () and state.retained_volume_ids == (kept_volume,)
    assert cs.get(f"{SVC}/internal") is not None and cs.get(f"{PVCS}/shared") is not None
    assert cs.get(f"{PVCS}/kept") is not None


def test_with_the_ccm_down_services_stay_pending_with_their_names(aws: None) -> None:
    cs = CloudSim()
    cs.apply(lb_service("web"))
    cs.run(1)
    (lb,) = elbs(cs)
    cs.sim.world.set_fault("ccm-down", "capi-quickstart")
    with cs.served() as port, cs.client(port) as client:
        td.delete_pass(client)
        cs.run(3)
        state = td.list_pass(client)
    assert not state.done and state.pending == 1
    (svc,) = state.services
    assert svc.deleting and svc.finalizers == (td.LB_CLEANUP_FINALIZER,) and svc.load_balancer_name == lb
    assert state.load_balancer_names == (lb,) and elbs(cs) == {lb}


def test_with_the_csi_driver_down_the_released_volume_stays_pending(aws: None) -> None:
    cs = CloudSim()
    cs.apply(storage_class("gp3", default=True))
    cs.apply(pvc("data"))
    cs.run(1)
    (volume,) = volumes(cs)
    cs.sim.world.set_fault("csi-down", "capi-quickstart")
    with cs.served() as port, cs.client(port) as client:
        td.delete_pass(client)
        cs.run(3)
        state = td.list_pass(client)
    assert state.claims == () and state.pending == 1 and state.volume_ids == (volume,)
    (pv,) = state.volumes
    assert (pv.phase, pv.claim, pv.reclaim_policy) == ("Released", "default/data", "Delete")


def test_bounded_passes_and_paginated_lists(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wc, "PAGE_LIMIT", 2)
    cs = CloudSim(workers=1)
    for i in range(5):
        cs.apply(lb_service(f"s{i}"))
    with cs.served() as port, cs.client(port) as client:
        first = td.delete_pass(client, max_deletes=3)
        assert first.truncated and len(first.deleted) == 3 and len(first.services) == 5
        second = td.delete_pass(client, max_deletes=3)
        assert not second.truncated and len(second.deleted) == 2
        assert {r.name for r in first.deleted + second.deleted} == {f"s{i}" for i in range(5)}
        cs.run(2)
        assert td.list_pass(client).done


def test_claims_bound_to_retain_volumes_only_when_asked(aws: None) -> None:
    cs = CloudSim(workers=1)
    cs.apply({**storage_class("keep"), "reclaimPolicy": "Retain"})
    cs.apply(pvc("kept", storage_class_name="keep"))
    cs.run(1)
    with cs.served() as port, cs.client(port) as client:
        assert td.delete_pass(client).deleted == ()
        asked = td.delete_pass(client, include_retained_claims=True)
    assert [(r.kind, r.name) for r in asked.deleted] == [("PersistentVolumeClaim", "kept")]
    assert asked.pending == 1 and asked.retained_volume_ids and not asked.volume_ids


# --------------------------------------------------------------------------------------------
# the activities: credentials from Secrets Manager, errors as Temporal sees them


@pytest.fixture
def stored_pki(monkeypatch: pytest.MonkeyPatch) -> sm.ClusterPKIRefs:
    """The reference cluster's PKI (the simulator's cluster CA) in (moto) Secrets Manager."""
    material = ref.cluster_pki()
    cas = {
        pki.CLUSTER_CA_CN: material.ca,
        pki.ETCD_CA_CN: material.etcd_ca,
        pki.FRONT_PROXY_CA_CN: material.front_proxy_ca,
    }
    monkeypatch.setattr(sm.kpki, "new_ca", lambda cn, **_: cas[cn])
    monkeypatch.setattr(sm.kpki, "new_service_account_keys", lambda: material.sa)
    transport.CONTEXTS.clear()
    refs = sm.ensure_pki(
        sm.client("ap-northeast-2"),
        sm.ClusterPKIRequest(cluster_name="capi-quickstart", region="ap-northeast-2"),
    )
    yield refs
    transport.CONTEXTS.clear()


def _through_temporal(fn: object, result: object) -> object:
    ret_type = activity._Definition.from_callable(fn).ret_type  # type: ignore[arg-type]
    conv = pydantic_data_converter.payload_converter
    return conv.from_payloads(conv.to_payloads([result]), [ret_type])[0]


def _access(refs: sm.ClusterPKIRefs) -> WorkloadAccess:
    return WorkloadAccess(region="ap-northeast-2", endpoint_host=ref.ENDPOINT, pki=refs, timeout_seconds=5)


def test_the_activities_end_to_end(
    aws: None, stored_pki: sm.ClusterPKIRefs, monkeypatch: pytest.MonkeyPatch
) -> None:
    cs = CloudSim(workers=1)
    cs.apply(storage_class("gp3", default=True))
    cs.apply(lb_service("web"))
    cs.apply(pvc("data"))
    cs.run(1)
    env = ActivityEnvironment()
    heartbeats: list[tuple] = []
    env.on_heartbeat = lambda *d: heartbeats.append(d)
    access = _access(stored_pki)
    with cs.served() as port:
        monkeypatch.setenv(transport.RESOLVE_ENV, f"*:*=127.0.0.1:{port}")
        deleted = env.run(td.delete_cloud_backed_objects, td.DeleteCloudBackedObjectsRequest(access=access))
        assert {r.kind for r in deleted.deleted} == {"Service", "PersistentVolumeClaim"}
        assert deleted.aws_calls == {"secrets-manager:GetSecretValue": 2} and len(heartbeats) == 2
        cs.run(2)
        listed = env.run(td.list_cloud_backed_objects, td.CloudBackedObjectsRequest(access=access))
    assert listed.done and listed.aws_calls == {}  # the TLS context is cached
    for fn, result in ((td.delete_cloud_backed_objects, deleted), (td.list_cloud_backed_objects, listed)):
        assert _through_temporal(fn, result) == result
        assert "PRIVATE KEY" not in result.model_dump_json()


def test_an_unreachable_api_is_a_retryable_error(
    aws: None, stored_pki: sm.ClusterPKIRefs, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(transport.RESOLVE_ENV, f"*:*=127.0.0.1:{port}")
    env = ActivityEnvironment()
    for fn, req in (
        (td.delete_cloud_backed_objects, td.DeleteCloudBackedObjectsRequest(access=_access(stored_pki))),
        (td.list_cloud_backed_objects, td.CloudBackedObjectsRequest(access=_access(stored_pki))),
    ):
        with pytest.raises(ApplicationError) as err:
            env.run(fn, req)
        assert err.value.type == "WorkloadUnreachable" and not err.value.non_retryable
