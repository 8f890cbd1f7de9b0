"""Sizes of the bootstrap data for the reference cluster (capi-quickstart, Kubernetes v1.20.5).

    .venv/bin/python -m capt.dev.bench.bootstrap_sizes

Runs the real activities against in-process moto: ensure_cluster_pki, ensure_bootstrap_token and
prepare_bootstrap_data for the first control-plane machine (kubeadm init), a second one
(kubeadm join --control-plane) and a worker, and prints the size of the rendered cloud-config,
of what Secrets Manager stores (gzipped), the number of chunks and the EC2 user data (boothook).
"""

from __future__ import annotations

import os

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT


for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
    del os.environ[var]
os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="ap-northeast-2"
)


def main() -> None:
    from moto import mock_aws
    from temporalio.testing import ActivityEnvironment

    from capt.activities.aws import secrets as sm
    from capt.activities.aws import token_secrets
    from capt.activities.kubeadm import bootstrap as kb
    from capt.dev.testkit.bootstrap_reference import ENDPOINT, reference_cluster

    cluster = reference_cluster()
    env = ActivityEnvironment()
    rows = []
    with mock_aws():
        pki = env.run(
            sm.ensure_cluster_pki,
            sm.ClusterPKIRequest(
                cluster_name=cluster.name,
                namespace=cluster.namespace,
                region=cluster.region,
                endpoint_host=ENDPOINT,
            ),
        )
        machines = [
            ("init", "control plane, first (kubeadm init)", "capi-quickstart-control-plane-a", None),
            ("join-control-plane", "control plane, joining", "capi-quickstart-control-plane-b", None),
            ("join-worker", "worker (md-0)", "capi-quickstart-md-0-x-a", "capi-quickstart-md-0"),
        ]
        for kind, label, machine, deployment in machines:
            token_arn = None
            if kind != "init":
                token_arn = env.run(
                    token_secrets.ensure_bootstrap_token,
                    token_secrets.BootstrapTokenRequest(
                        cluster_name=cluster.name,
                        namespace=cluster.namespace,
                        region=cluster.region,
                        machine_name=machine,
                    ),
                ).secret_arn
            refs = env.run(
                kb.prepare_bootstrap_data,
                kb.bootstrap_request_for(
                    cluster,
                    machine_name=machine,
                    kind=kind,  # type: ignore[arg-type]
                    endpoint_host=ENDPOINT,
                    pki=pki,
                    token_secret_arn=token_arn,
                    deployment=deployment,
                ),
            )
            rows.append((label, refs.rendered_bytes, refs.stored_bytes, refs.chunks, refs.user_data_bytes))
    print(f"{'machine':38} {'cloud-config':>12} {'stored (gz)':>12} {'chunks':>6} {'user data':>10}")
    for label, rendered, stored, chunks, user_data in rows:
        print(f"{label:38} {rendered:>10} B {stored:>10} B {chunks:>6} {user_data:>8} B")


if __name__ == "__main__":
    main()
