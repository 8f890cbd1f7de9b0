"""`capt kubeconfig`: a context named after the cluster with a client certificate issued for
--ttl only, written 0600, merged into an existing kubeconfig without touching its other entries."""

from __future__ import annotations

import datetime as dt

import yaml
from cryptography import x509

from capt import cli
from capt.activities.kubeadm import pki
from capt.cli import common as cli_common
from capt.cli import kubeconfig as cli_kubeconfig


def _pair():
    ca = pki.new_ca("kubernetes")
    admin = pki.issue_cert(
        ca, pki.ADMIN_CN, organizations=(pki.ADMIN_ORG,), client=True, validity=dt.timedelta(hours=2)
    )
    return ca, admin


def test_the_admin_certificate_is_short_lived_and_signed_by_the_ca():
    ca, admin = _pair()
    cert = x509.load_pem_x509_certificate(admin.cert.encode())
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(hours=2) <= life <= dt.timedelta(hours=2, minutes=6)  # + kubeadm's clock skew
    assert pki.verify_signed_by(admin.cert, ca)


def test_merge_keeps_other_entries_replaces_ours_and_switches_context(tmp_path):
    ca, admin = _pair()
    path = tmp_path / "config"
    other = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "other", "cluster": {"server": "https://o:6443"}},
            {"name": "prod", "cluster": {"server": "https://old:6443"}},
        ],
        "users": [{"name": "other-admin", "user": {"token": "t"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other-admin"}}],
        "current-context": "other",
    }
    path.write_text(yaml.safe_dump(other))
    cli_kubeconfig.merge_kubeconfig(
        cli_kubeconfig.kubeconfig_text("prod", "https://api.example:6443", ca.cert, admin), path
    )
    merged = yaml.safe_load(path.read_text())
    assert [c["name"] for c in merged["clusters"]] == ["other", "prod"]
    assert merged["clusters"][1]["cluster"]["server"] == "https://api.example:6443"
    assert [u["name"] for u in merged["users"]] == ["other-admin", "prod-admin"]
    assert [c["name"] for c in merged["contexts"]] == ["other", "prod"]
    assert merged["current-context"] == "prod"
    assert path.stat().st_mode & 0o077 == 0


def test_bad_ttl_and_both_outputs_are_usage_errors():
    from click.testing import CliRunner

    assert CliRunner().invoke(cli.main, ["kubeconfig", "c", "--ttl", "30s"]).exit_code == 2
    both = CliRunner().invoke(cli.main, ["kubeconfig", "c", "--output", "f", "--merge"])
    assert both.exit_code == 2 and "give --output or --merge, not both" in both.output


def test_wait_progress_lines_are_timestamped_and_deduplicated():
    import io
    import re
    from types import SimpleNamespace

    out = io.StringIO()  # not a terminal: lines only
    show = cli_common._progress_printer(out)
    for phase in ("Provisioning", "Provisioning", "Ready"):
        show(SimpleNamespace(phase=phase, ready_machines=1, desired_machines=2, message="m"))
    show.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert all(
        re.match(r"^\d\d:\d\d:\d\d (Provisioning|Ready): 1/2 machines ready — m$", line) for line in lines
    )
