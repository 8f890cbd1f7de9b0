"""Every activity function the worker registers. Add new activities here."""

from collections.abc import Callable

ACTIVITIES: list[Callable] = []

# Cluster PKI, bootstrap tokens and bootstrap data in Secrets Manager (issue 4, bootstrap half).
from capt.activities.aws import bootstrap_data as _bootstrap_data  # noqa: E402
from capt.activities.aws import secrets as _secrets  # noqa: E402
from capt.activities.aws import token_secrets as _token_secrets  # noqa: E402
from capt.activities.kubeadm import bootstrap as _bootstrap  # noqa: E402

ACTIVITIES += [
    _secrets.ensure_cluster_pki,
    _token_secrets.ensure_bootstrap_token,
    _token_secrets.refresh_bootstrap_token,
    _bootstrap_data.delete_bootstrap_data,
    _secrets.delete_cluster_secrets,
    _bootstrap.prepare_bootstrap_data,
]

# Workload-cluster API (readyz, nodes, cordon/drain/delete, bootstrap-token Secret) and etcd
# membership through SSM (issue 4, workload-cluster access).
from capt.activities.workload import activities as _workload  # noqa: E402
from capt.activities.workload import etcd as _etcd  # noqa: E402

ACTIVITIES += _workload.ACTIVITIES + _etcd.ACTIVITIES

# kubeadm-config, CoreDNS and kube-proxy follow a control-plane upgrade (issue 18).
from capt.activities.workload import components as _components  # noqa: E402

ACTIVITIES += [_components.upgrade_cluster_components]

# Machines' EC2 side: AMI lookup, instances, API load balancer membership (issue 4, instances).
from capt.activities.aws import images as _images  # noqa: E402
from capt.activities.aws import instances as _instances  # noqa: E402
from capt.activities.aws import lb_membership as _lb_membership  # noqa: E402

ACTIVITIES += [
    _images.lookup_image,
    _instances.ensure_instance,
    _instances.describe_instance,
    _instances.lookup_machine_instance,
    _instances.terminate_instance,
    _instances.describe_cluster_instances,
    _lb_membership.register_with_load_balancer,
    _lb_membership.deregister_from_load_balancer,
]

# Network, security groups, API load balancer, bastion and the ownership sweep (issue 3).
from capt.activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES as _infrastructure  # noqa: E402

ACTIVITIES += _infrastructure

# Health checks: the owners' machines and remediation Updates, through the Temporal client (issue 9).
from capt.activities.owners import HEALTH_ACTIVITIES as _health  # noqa: E402

ACTIVITIES += _health

# Optional EventBridge -> SQS instance state events for the health check (issue 9).
from capt.activities.aws.instance_events import INSTANCE_EVENT_ACTIVITIES as _instance_events  # noqa: E402

ACTIVITIES += _instance_events

# ClusterResourceSets: server-side apply of the addons' ConfigMap documents (issue 8).
from capt.activities.workload.addons import ADDON_ACTIVITIES as _addons  # noqa: E402

ACTIVITIES += _addons

# Workload teardown: delete LoadBalancer Services and EBS-backed claims (and the pods that hold
# them) so that the cloud controllers release their ELBs and volumes (issue 15, WP5).
from capt.activities.workload.teardown import TEARDOWN_ACTIVITIES as _teardown  # noqa: E402

ACTIVITIES += _teardown

# Cluster deletion (issue 15): the wider sweep (what Kubernetes made in AWS too), what it needs
# beyond the infrastructure's delete activities, and the cluster's workflow tree.
from capt.activities import cluster_tree as _cluster_tree  # noqa: E402
from capt.activities.aws import cleanup as _cleanup  # noqa: E402

ACTIVITIES += _cleanup.CLEANUP_ACTIVITIES + _cluster_tree.CLUSTER_TREE_ACTIVITIES

# Owners notice machine workflows that closed without telling them (issue 15, WP7).
from capt.activities.temporal_tree import TEMPORAL_TREE_ACTIVITIES as _temporal_tree  # noqa: E402

ACTIVITIES += _temporal_tree
