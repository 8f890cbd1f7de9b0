"""KubeadmControlPlane rolloutBefore.certificatesExpiryDays (issue 18): read from v1beta1
`spec.rolloutBefore` and v1beta2 `spec.rollout.before`, bounded as CAPI bounds it (>= 7), and
turned into the creation-time threshold before which machines need a rollout."""

from __future__ import annotations

import pytest
import yaml

from capt.spec.errors import ManifestError
from capt.spec.loader import load_manifest
from capt.spec.models import ControlPlaneSpec, MachineTemplate
from capt.workflows.controlplane.models import CERTIFICATE_LIFETIME_SECONDS, _rollout_threshold
from tests.spec.test_spec_loader import CLUSTERCTL_VARS
from tests.support.paths import CAPA_TEMPLATE

DAY = 86400.0


def with_kcp(**spec) -> str:
    docs = [d for d in yaml.safe_load_all(CAPA_TEMPLATE.read_text()) if d]
    for d in docs:
        if d["kind"] == "KubeadmControlPlane":
            d["spec"].update(spec)
    return yaml.safe_dump_all(docs)


def test_certificates_expiry_days_is_read() -> None:
    loaded = load_manifest(with_kcp(rolloutBefore={"certificatesExpiryDays": 21}), CLUSTERCTL_VARS, env={})
    assert loaded.spec.control_plane.certificates_expiry_days == 21


@pytest.mark.parametrize("days", [3, 365, "21"])
def test_out_of_bounds_days_name_the_field(days) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(with_kcp(rolloutBefore={"certificatesExpiryDays": days}), CLUSTERCTL_VARS, env={})
    assert "spec.rolloutBefore.certificatesExpiryDays" in str(info.value)


@pytest.mark.parametrize(
    ("rollout_after", "days", "threshold"),
    [
        (None, None, None),
        # machines whose certificates (created + 365 d) expire within 30 days of now
        (None, 30, 1000 * DAY - CERTIFICATE_LIFETIME_SECONDS + 30 * DAY),
        # rolloutAfter alone
        ("1970-01-02T00:00:00Z", None, DAY),
        # both: the later threshold replaces more machines
        ("1970-12-31T00:00:00Z", 30, 1000 * DAY - CERTIFICATE_LIFETIME_SECONDS + 30 * DAY),
    ],
)
def test_rollout_threshold(rollout_after, days, threshold) -> None:
    spec = ControlPlaneSpec(
        name="cp",
        version="v1.30.2",
        machine_template=MachineTemplate(name="t", instance_type="m5.large"),
        rollout_after=rollout_after,
        certificates_expiry_days=days,
    )
    got = _rollout_threshold(spec, 1000 * DAY)
    assert got == threshold
