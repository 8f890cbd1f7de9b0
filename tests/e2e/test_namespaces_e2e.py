"""Namespaces isolate in AWS (issue 15), on the local stack through the CLI: `prod` in `team-a`
and `prod` in `team-b`, created concurrently, are two VPCs, two load balancers, two sets of
instances and two secret trees; deleting one leaves the other Ready with every resource it had
(same ids, same tags), and deleting the second leaves the account as it was before."""

from __future__ import annotations

import json
import subprocess

import boto3
import pytest

from capt.activities.aws import audit, audit_compare
from tests.e2e.test_cluster_e2e import BIN, capt
from tests.e2e.test_cluster_e2e import stack as stack  # noqa: F401 - the module-scoped local stack
from tests.support.paths import QUICKSTART

pytestmark = pytest.mark.e2e
TEAMS = ("team-a", "team-b")


def manifest(tmp_path, namespace: str) -> str:
    text = QUICKSTART.read_text().replace("namespace: capi-quickstart", f"namespace: {namespace}")
    text = text.replace("capi-quickstart", "prod").replace("replicas: 3", "replicas: 1")
    path = tmp_path / f"{namespace}.yaml"
    path.write_text(text)
    return str(path)


def owned_by(inv: audit.Inventory, cluster_id: str) -> set[tuple[str, str, tuple]]:
    return {(r.kind, r.id, r.tags) for r in inv.resources if r.cluster == cluster_id}


def test_prod_in_two_namespaces_shares_nothing_and_deleting_one_spares_the_other(
    stack,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    env, _ = stack
    for key, value in env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    factory = lambda service, r: boto3.client(service, region_name=r or region)  # noqa: E731
    baseline = audit.take_inventory(region, client_factory=factory)

    # Both at once, as two teams would.
    applies = [
        subprocess.Popen(
            [str(BIN / "capt"), "apply", "-f", manifest(tmp_path, ns), "--wait", "--timeout", "15m"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for ns in TEAMS
    ]
    for p in applies:
        out, _ = p.communicate(timeout=1000)
        assert p.returncode == 0, out

    inv = audit.take_inventory(region, client_factory=factory)
    a, b = owned_by(inv, "team-a.prod"), owned_by(inv, "team-b.prod")
    for mine in (a, b):
        kinds = {kind for kind, _, _ in mine}
        assert {"vpc", "subnet", "security-group", "load-balancer", "instance", "secret"} <= kinds, kinds
    assert not {(k, i) for k, i, _ in a} & {(k, i) for k, i, _ in b}  # not one resource shared
    assert not [r for r in inv.resources if r.cluster == "prod"]  # nothing tagged with the bare name
    secrets = {r.native_name for r in inv.of("secret") if r.cluster in ("team-a.prod", "team-b.prod")}
    assert any(s.startswith("capt/team-a/prod/") for s in secrets)
    assert any(s.startswith("capt/team-b/prod/") for s in secrets)
    for ns in TEAMS:
        shown = capt(env, "describe", "cluster", "prod", "-n", ns, "-o", "json")
        assert json.loads(shown.stdout)["clusterId"] == f"{ns}.prod", shown.stdout

    deleted = capt(env, "delete", "cluster", "prod", "-n", "team-a", "--wait", "--timeout", "15m")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    after = audit.take_inventory(region, client_factory=factory)
    assert owned_by(after, "team-a.prod") == set()
    # team-b kept every resource it had, with the same tags (volumes of its live instances too).
    assert owned_by(after, "team-b.prod") == b
    shown = capt(env, "describe", "cluster", "prod", "-n", "team-b", "-o", "json")
    assert json.loads(shown.stdout)["phase"] == "Ready", shown.stdout

    deleted = capt(env, "delete", "cluster", "prod", "-n", "team-b", "--wait", "--timeout", "15m")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    final = audit.take_inventory(region, client_factory=factory)
    report = audit_compare.compare(baseline, final, desired=())
    assert report.clean, report.summary()
    assert final.keys() - baseline.keys() == set(), sorted(final.keys() - baseline.keys())
