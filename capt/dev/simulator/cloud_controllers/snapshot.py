"""The controllers' view of a cluster, taken under the world's lock: the CCM's context, the
Services and claims to act on, the volumes to delete and attach (a mixin of `CloudControllers`)."""

from __future__ import annotations

import logging

from capt.dev.simulator import storage
from capt.dev.simulator.cloud_controllers.names import (
    ADDITIONAL_TAGS_ANNOTATION,
    EBS_DRIVER,
    EXCLUDE_LB_LABEL,
    IN_TREE_EBS,
    INTERNAL_ANNOTATION,
    LB_TYPE_ANNOTATION,
    SERVICE_FINALIZER,
    SOURCE_RANGES_ANNOTATION,
    ZONE_LABEL,
    _key_values,
    cluster_id_from_tags,
    csi_config,
    load_balancer_name,
    pv_name,
    size_gib,
    volume_tags,
)
from capt.dev.simulator.cloud_controllers.work import (
    BindWork,
    CloudContext,
    ClusterWork,
    ProvisionWork,
    ServiceWork,
    Target,
    VolumeDeleteWork,
    _is_ours,
    pv_volume_id,
)
from capt.dev.simulator.world.state import Cluster, Machine

log = logging.getLogger("capt.simulator")


class SnapshotMixin:
    """The snapshot steps of `CloudControllers`."""

    # -- snapshot (under the lock) -----------------------------------------------------------

    def _self_instance(self, cluster: Cluster) -> Machine | None:
        candidates = sorted(
            (
                m
                for m in self.world.machines.values()
                if m.cluster_key == cluster.key and m.control_plane and m.alive
            ),
            key=lambda m: m.instance_id,
        )
        return candidates[0] if candidates else None

    def _context(self, cluster: Cluster) -> CloudContext | None:
        me = self._self_instance(cluster)
        if me is None:
            return None  # no control plane runs: neither does the CCM nor the CSI controller
        v = me.view
        tagging, error = cluster_id_from_tags(v.cloud_cluster_ids, v.legacy_cloud_cluster_id)
        if error and self._context_logged.get(cluster.key) != error:
            self._context_logged[cluster.key] = error
            log.warning(
                "cluster %s: the cloud-controller-manager does not start (instance %s): %s",
                cluster.name,
                v.instance_id,
                error,
            )
        return CloudContext(
            cluster_key=cluster.key,
            cluster_name=cluster.name,
            region=v.region,
            vpc_id=v.vpc_id,
            subnet_id=v.subnet_id,
            tagging=tagging,
            error=error,
        )

    def _due(self, key: tuple) -> bool:
        r = self._retry.get(key)
        return r is None or self.world.clock() >= r.due

    def _snapshot(self, cluster: Cluster) -> ClusterWork | None:
        ctx = self._context(cluster)
        if ctx is None:
            return None
        cid = ctx.tagging.cluster_id if ctx.tagging else None
        work = ClusterWork(
            context=ctx,
            ccm=ctx.tagging is not None and not self.world.controller_down(cluster, "ccm", cid),
            csi=not self.world.controller_down(cluster, "csi", cid),
        )
        if work.ccm:
            self._snapshot_services(cluster, work)
        if work.csi:
            self._snapshot_volumes(cluster, work)
        return work

    def _targets(self, cluster: Cluster) -> tuple[Target, ...]:
        out = []
        for node in cluster.nodes.values():
            m = self.world.machines.get(node.instance_id)
            if m is None or not m.alive or EXCLUDE_LB_LABEL in node.labels:
                continue
            out.append(Target(instance_id=m.instance_id, security_groups=m.view.security_groups))
        return tuple(sorted(out, key=lambda t: t.instance_id))

    def _snapshot_services(self, cluster: Cluster, work: ClusterWork) -> None:
        targets = self._targets(cluster)
        for key, svc in storage.items(cluster, storage.SERVICES):
            m, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            uid, ns, name = str(m.get("uid")), key[2], key[3]
            annotations = m.get("annotations") or {}
            lb_type = annotations.get(LB_TYPE_ANNOTATION, "").lower()
            wants = (
                spec.get("type") == "LoadBalancer"
                and not spec.get("loadBalancerClass")
                and lb_type != "external"
                and not storage.deleting(svc)
            )
            lb = load_balancer_name(uid)
            if wants:
                if lb_type == "nlb":
                    self._note(("svc", cluster.key, uid), f"service {ns}/{name}: NLBs are not simulated")
                    continue
                storage.add_finalizer(cluster, svc, SERVICE_FINALIZER)  # before any cloud call
                ranges = tuple(spec.get("loadBalancerSourceRanges") or ()) or tuple(
                    r.strip() for r in annotations.get(SOURCE_RANGES_ANNOTATION, "").split(",") if r.strip()
                )
                item = ServiceWork(
                    key=key,
                    uid=uid,
                    namespace=ns,
                    name=name,
                    action="ensure",
                    lb_name=lb,
                    ports=tuple(
                        (str(p.get("protocol", "TCP")), int(p.get("port", 0)), int(p.get("nodePort") or 0))
                        for p in spec.get("ports") or []
                    ),
                    source_ranges=ranges or ("0.0.0.0/0",),
                    internal=annotations.get(INTERNAL_ANNOTATION, "false").lower() not in ("", "false"),
                    additional_tags=tuple(
                        sorted(_key_values(annotations.get(ADDITIONAL_TAGS_ANNOTATION, "")).items())
                    ),
                    targets=targets,
                )
                memo = self._lbs.get((cluster.key, uid))
                ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                if memo is not None and memo.signature == item.signature and ingress:
                    continue
                if self._due(("svc", cluster.key, uid)):
                    work.services.append(item)
            elif SERVICE_FINALIZER in storage.finalizers(svc) and self._due(("svc", cluster.key, uid)):
                work.services.append(
                    ServiceWork(key=key, uid=uid, namespace=ns, name=name, action="delete", lb_name=lb)
                )

    def _zone_for(self, cluster: Cluster, pvc_key: tuple, sc: dict) -> str | None:
        ns, claim = pvc_key[2], pvc_key[3]
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            for (pns, _), pod in sorted(cluster.pods.items()):
                if pns == ns and pod.node_name and claim in storage.claims_of(pod.volumes):
                    node = cluster.nodes.get(pod.node_name)
                    if node is not None:
                        return node.labels.get(ZONE_LABEL)
            return None  # waits for a consumer
        for topo in sc.get("allowedTopologies") or []:
            for expr in topo.get("matchLabelExpressions") or []:
                if expr.get("key") in (ZONE_LABEL, "topology.ebs.csi.aws.com/zone") and expr.get("values"):
                    return str(expr["values"][0])
        nodes = sorted(
            cluster.nodes.values(), key=lambda n: (n.ready_status != "True", n.control_plane, n.name)
        )
        for node in nodes:
            if node.labels.get(ZONE_LABEL):
                return node.labels[ZONE_LABEL]
        return None

    def _snapshot_volumes(self, cluster: Cluster, work: ClusterWork) -> None:
        ctx = work.context
        config = csi_config(cluster, ctx.tagging, self.options)
        classes = {k[3]: o for k, o in storage.items(cluster, storage.STORAGE_CLASSES)}
        pvs = {k[3]: o for k, o in storage.items(cluster, storage.PVS)}
        default = storage.default_storage_class(cluster)
        for key, pvc in storage.items(cluster, storage.PVCS):
            m, spec = pvc.get("metadata") or {}, pvc.get("spec") or {}
            if storage.deleting(pvc) or spec.get("volumeName"):
                continue
            class_name = spec.get("storageClassName")
            if class_name is None:  # null: the default class, assigned retroactively
                class_name = default
            sc = classes.get(class_name or "")
            if not class_name or sc is None or sc.get("provisioner") not in (EBS_DRIVER, IN_TREE_EBS):
                continue
            uid = str(m.get("uid"))
            pv = pv_name(uid)
            if pv in pvs:
                work.binds.append(BindWork(pvc_key=key, pvc_uid=uid, pv=pv))
                continue
            zone = self._zone_for(cluster, key, sc)
            if zone is None or not self._due(("pvc", cluster.key, uid)):
                continue
            params = {str(k).lower(): str(v) for k, v in (sc.get("parameters") or {}).items()}
            in_tree = sc.get("provisioner") == IN_TREE_EBS
            work.provisions.append(
                ProvisionWork(
                    pvc_key=key,
                    pvc_uid=uid,
                    pv=pv,
                    zone=zone,
                    size_gib=size_gib(((spec.get("resources") or {}).get("requests") or {}).get("storage")),
                    volume_type=params.get("type") or ("gp2" if in_tree else "gp3"),
                    encrypted=params.get("encrypted", "false").lower() == "true",
                    kms_key_id=params.get("kmskeyid") or None,
                    iops=int(params["iops"]) if params.get("iops", "").isdigit() else None,
                    throughput=int(params["throughput"]) if params.get("throughput", "").isdigit() else None,
                    tags=tuple(sorted(volume_tags(config, pv, key[2], key[3]).items())),
                    in_tree=in_tree,
                    fs_type=params.get("csi.storage.k8s.io/fstype") or params.get("fstype") or "ext4",
                    reclaim_policy=sc.get("reclaimPolicy") or "Delete",
                    class_name=class_name,
                    access_modes=tuple(spec.get("accessModes") or ("ReadWriteOnce",)),
                    volume_mode=spec.get("volumeMode") or "Filesystem",
                )
            )
        for name, pv in pvs.items():
            if not _is_ours(pv):
                continue
            pv_spec, status = pv.get("spec") or {}, pv.get("status") or {}
            if (
                pv_spec.get("persistentVolumeReclaimPolicy") == "Delete"
                and status.get("phase") == "Released"
                and self._due(("pv", cluster.key, name))
            ):
                work.volume_deletes.append(
                    VolumeDeleteWork(
                        pv=name,
                        pv_uid=str((pv.get("metadata") or {}).get("uid")),
                        volume_id=pv_volume_id(pv) or "",
                    )
                )
        for (ns, _), pod in sorted(cluster.pods.items()):
            node = cluster.nodes.get(pod.node_name or "")
            m = self.world.machines.get(node.instance_id) if node else None
            if m is None or not m.alive:
                continue
            for claim in storage.claims_of(pod.volumes):
                pvc = cluster.objects.get(storage.key_of(storage.PVCS, ns, claim))
                volume = ((pvc or {}).get("spec") or {}).get("volumeName")
                pv = pvs.get(volume or "")
                if pv is not None and _is_ours(pv):
                    work.attachments.setdefault(pv_volume_id(pv) or "", m.instance_id)
