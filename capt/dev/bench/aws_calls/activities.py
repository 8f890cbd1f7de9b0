"""Part 2, one machine's activities: each machine-side activity run once against moto, its AWS
calls counted (`activity_costs`)."""

from __future__ import annotations

from typing import Any

from capt.dev.bench.aws_calls.ops import REGION, VERSION, _env

# ---------------------------------------------------------------------------------------------
# 2. one machine's activities against moto

# Labels: an activity, or an activity in one of its cases (how the workflow run meets it).
NOT_MEASURED = {
    "send_etcd_member_removal": "SSM SendCommand to a control-plane instance; moto runs no SSM agent",
    "check_etcd_member_removal": "SSM GetCommandInvocation",
    "send_etcd_member_list": "SSM SendCommand",
    "check_etcd_member_list": "SSM GetCommandInvocation",
}
# The workload-side activities (Kubernetes API, not AWS) the fake cloud also counts.
NOT_AWS = {
    "list_workload_nodes",
    "cordon_node",
    "drain_node",
    "delete_node",
    "upgrade_cluster_components",
    "describe_machine_workflows",
}


def activity_costs(region: str = REGION) -> dict[str, dict[str, int]]:
    """Each machine-side activity's AWS calls, per operation, run once against moto in the
    order a machine's life runs them (a worker, then a control-plane machine's extras)."""
    from moto import mock_aws
    from temporalio.testing import ActivityEnvironment

    from capt.activities.aws import bootstrap_data, images, lb_membership, session, token_secrets
    from capt.activities.aws import instances as ec2
    from capt.activities.aws import secrets as sm
    from capt.activities.kubeadm import bootstrap as kb
    from capt.dev.testkit import aws_setup
    from capt.spec.models import KubeadmConfigSpec, MachineTemplate

    cluster = "bench-calls"
    costs: dict[str, dict[str, int]] = {}
    env = ActivityEnvironment()

    def run(label: str, fn: Any, arg: Any) -> Any:
        result = env.run(fn, arg)
        costs[label] = dict(sorted(result.aws_calls.items()))
        return result

    with _env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false"), mock_aws():
        session.reset_clients()
        net = aws_setup.machine_net(cluster, VERSION, region)
        endpoint = f"{net.load_balancer}.elb.example"
        pki = env.run(
            sm.ensure_cluster_pki,
            sm.ClusterPKIRequest(
                cluster_name=cluster, region=region, endpoint_host=endpoint, cluster_id=cluster
            ),
        )
        image = run(
            "lookup_image",
            images.lookup_image,
            images.ImageLookupRequest(region=region, kubernetes_version=VERSION, instance_type="t3.large"),
        ).image.image_id

        def machine(name: str, role: str, kind: str, az: str) -> str:
            token_arn = None
            if kind != "init":
                token = run(
                    "ensure_bootstrap_token",
                    token_secrets.ensure_bootstrap_token,
                    token_secrets.BootstrapTokenRequest(
                        cluster_name=cluster, region=region, machine_name=name, cluster_id=cluster
                    ),
                )
                token_arn = token.secret_arn
                # create_bootstrap_token_secret: its AWS part reads the token (the rest is the
                # workload's API server).
                with session.counting_calls() as tally:
                    token_secrets.read_bootstrap_token(sm.client(region), token_arn)
                costs["create_bootstrap_token_secret"] = dict(tally)
            refs = run(
                f"prepare_bootstrap_data ({kind})",
                kb.prepare_bootstrap_data,
                kb.BootstrapRequest(
                    cluster_name=cluster,
                    region=region,
                    machine_name=name,
                    kind=kind,  # type: ignore[arg-type]
                    kubernetes_version=VERSION,
                    kubeadm=KubeadmConfigSpec(),
                    endpoint_host=endpoint,
                    pki=pki,
                    token_secret_arn=token_arn,
                    cluster_id=cluster,
                ),
            )
            request = ec2.InstanceRequest(
                region=region,
                cluster_name=cluster,
                machine_name=name,
                role=role,  # type: ignore[arg-type]
                availability_zone=az,
                subnet_id=net.subnets[az],
                security_group_ids=(net.control_plane_sg if role == "control-plane" else net.node_sg,),
                template=MachineTemplate(name="tpl", instance_type="t3.large"),
                kubernetes_version=VERSION,
                image_id=image,
                bootstrap_secret_prefix=refs.secret_prefix,
                bootstrap_chunks=refs.chunks,
                cluster_id=cluster,
            )
            iid = run("ensure_instance", ec2.ensure_instance, request).instance_id
            run("ensure_instance (found)", ec2.ensure_instance, request)
            run(
                "describe_instance",
                ec2.describe_instance,
                ec2.DescribeInstanceRequest(region=region, instance_id=iid),
            )
            if token_arn:
                run(
                    "refresh_bootstrap_token",
                    token_secrets.refresh_bootstrap_token,
                    token_secrets.BootstrapTokenRefreshRequest(
                        region=region, secret_arn=token_arn, ttl_seconds=3600
                    ),
                )
            delete = bootstrap_data.DeleteBootstrapDataRequest(
                cluster_name=cluster,
                region=region,
                machine_name=name,
                secret_prefix=refs.secret_prefix,
                chunks=refs.chunks,
                cluster_id=cluster,
            )
            run("delete_bootstrap_data", bootstrap_data.delete_bootstrap_data, delete)
            run("delete_bootstrap_data (nothing left)", bootstrap_data.delete_bootstrap_data, delete)
            return iid

        azs = list(net.subnets)
        worker = machine("md-0-aaaaa", "node", "join-worker", azs[0])
        first_cp = machine("cp-aaaaa", "control-plane", "init", azs[1])
        machine("cp-bbbbb", "control-plane", "join-control-plane", azs[0])
        lb = lb_membership.LoadBalancerRegistration(
            region=region,
            load_balancer_type="classic",
            load_balancer_name=net.load_balancer,
            instance_id=first_cp,
        )
        run("register_with_load_balancer", lb_membership.register_with_load_balancer, lb)
        run("register_with_load_balancer (already registered)", lb_membership.register_with_load_balancer, lb)
        run("deregister_from_load_balancer", lb_membership.deregister_from_load_balancer, lb)
        run(
            "lookup_machine_instance",
            ec2.lookup_machine_instance,
            ec2.MachineInstanceLookup(region=region, cluster_name=cluster, machine_name="md-0-aaaaa"),
        )
        for iid in (worker, first_cp):
            run(
                "terminate_instance",
                ec2.terminate_instance,
                ec2.TerminateInstanceRequest(region=region, instance_id=iid, cluster_id=cluster),
            )
        session.reset_clients()
    return costs
