"""AMI selection: explicit id, CAPA's name-pattern lookup (newest wins), no-match error."""

from __future__ import annotations

import datetime as dt

import pytest
from temporalio.exceptions import ApplicationError

from capt.activities.aws import images, session
from capt.spec.models import AMISelector

REGION = "ap-northeast-2"
CAPA_ORG = AMISelector().lookup_org


@pytest.fixture(autouse=True)
def _no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto would load ~1300 stock AMIs into every fresh EC2 backend (0.5 s each); the tests
    create the images they need."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.mark.parametrize(
    ("instance_type", "arch"),
    [
        ("t3.large", "x86_64"),
        ("m5.xlarge", "x86_64"),
        ("m7i-flex.large", "x86_64"),
        ("g5.xlarge", "x86_64"),  # GPU series "g", Intel/AMD host
        ("p4d.24xlarge", "x86_64"),
        ("t4g.medium", "arm64"),
        ("m7gd.large", "arm64"),
        ("c6gn.xlarge", "arm64"),
        ("im4gn.large", "arm64"),
        ("g5g.xlarge", "arm64"),
        ("a1.large", "arm64"),
        ("hpc7g.16xlarge", "arm64"),
        ("u-6tb1.metal", "x86_64"),
        (None, "x86_64"),
    ],
)
def test_architecture_for(instance_type: str | None, arch: str) -> None:
    assert images.architecture_for(instance_type) == arch


def test_newest_by_creation_date_with_deterministic_ties() -> None:
    listed = [
        {"ImageId": "ami-1", "Name": "a", "CreationDate": "2024-05-01T00:00:00.000Z"},
        {"ImageId": "ami-2", "Name": "b", "CreationDate": "2025-01-02T00:00:00.000Z"},
        {"ImageId": "ami-3", "Name": "c", "CreationDate": "2024-12-31T23:59:59.000Z"},
    ]
    assert images.newest(listed)["ImageId"] == "ami-2"
    assert images.newest(reversed(listed))["ImageId"] == "ami-2"
    tie = [
        {"ImageId": "ami-9", "Name": "x-1", "CreationDate": "2025-01-01T00:00:00.000Z"},
        {"ImageId": "ami-8", "Name": "x-2", "CreationDate": "2025-01-01T00:00:00.000Z"},
    ]
    assert images.newest(tie)["ImageId"] == images.newest(list(reversed(tie)))["ImageId"] == "ami-8"
    assert images.newest([]) is None


def test_name_pattern_is_capas() -> None:
    assert AMISelector().name_pattern("v1.31.2") == "capa-ami-ubuntu-24.04-?1.31.2-*"


def add_ami(
    name: str, created: dt.datetime, *, owner: str = CAPA_ORG, arch: str = "x86_64", state: str = "available"
) -> str:
    """Put an image into moto as a third-party account published it.

    moto's RegisterImage always makes the caller the owner, ignores Architecture and stamps
    "now"; CAPA's images are owned by another account and differ in age, so the test builds
    moto's own model object directly.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.utils import random_ami_id

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    ami_id = random_ami_id()
    backend.amis[ami_id] = Ami(
        backend,
        ami_id,
        name=name,
        owner_id=owner,
        architecture=arch,
        virtualization_type="hvm",
        root_device_name="/dev/sda1",
        creation_date=created,
        state=state,
    )
    return ami_id


def lookup(version: str = "v1.31.0", instance_type: str = "t3.large", **selector) -> images.ImageLookupResult:
    return images.lookup_image(
        images.ImageLookupRequest(
            region=REGION,
            ami=AMISelector(**selector),
            kubernetes_version=version,
            instance_type=instance_type,
        )
    )


def test_lookup_picks_newest_matching_image(aws: None) -> None:
    day = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    older = add_ami("capa-ami-ubuntu-24.04-v1.31.0-1700000000", day)
    newer = add_ami("capa-ami-ubuntu-24.04-v1.31.0-1740000000", day + dt.timedelta(days=30))
    # Newer still, but each is wrong in one way: version, owner, architecture, OS, state.
    later = day + dt.timedelta(days=60)
    add_ami("capa-ami-ubuntu-24.04-v1.32.0-1750000000", later)
    add_ami("capa-ami-ubuntu-24.04-v1.31.0-1750000001", later, owner="999999999999")
    add_ami("capa-ami-ubuntu-24.04-v1.31.0-1750000002", later, arch="arm64")
    add_ami("capa-ami-ubuntu-22.04-v1.31.0-1750000003", later)
    add_ami("capa-ami-ubuntu-24.04-v1.31.0-1750000004", later, state="pending")

    result = lookup()
    assert result.image.image_id == newer != older
    assert result.image.looked_up and result.image.owner_id == CAPA_ORG
    assert result.aws_calls == {"ec2:DescribeImages": 1}

    arm = lookup(instance_type="m7g.large")
    assert arm.image.name == "capa-ami-ubuntu-24.04-v1.31.0-1750000002"


def test_lookup_honours_custom_format_org_and_os(aws: None) -> None:
    when = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    mine = add_ami("corp-k8s-1.30.4-rocky-9", when, owner="111122223333")
    add_ami("capa-ami-ubuntu-24.04-v1.30.4-1", when + dt.timedelta(days=1))
    result = lookup(
        "v1.30.4",
        lookup_format="corp-k8s-{{.K8sVersion}}-{{.BaseOS}}",
        lookup_org="111122223333",
        lookup_base_os="rocky-9",
    )
    assert result.image.image_id == mine


def test_explicit_id_is_used_as_given(aws: None) -> None:
    pinned = add_ami("my-own-image", dt.datetime(2020, 1, 1, tzinfo=dt.UTC), owner="111122223333")
    add_ami("capa-ami-ubuntu-24.04-v1.31.0-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    result = lookup(id=pinned)
    assert result.image.image_id == pinned
    assert result.image.root_device_name == "/dev/sda1"
    assert not result.image.looked_up
    assert result.aws_calls == {"ec2:DescribeImages": 1}


def test_explicit_id_that_does_not_exist_fails_fast(aws: None) -> None:
    with pytest.raises(ApplicationError) as err:
        lookup(id="ami-0123456789abcdef0")
    assert err.value.non_retryable
    assert "ami-0123456789abcdef0" in err.value.message


def test_no_match_is_a_clear_non_retryable_error(aws: None) -> None:
    add_ami("capa-ami-ubuntu-24.04-v1.30.0-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(ApplicationError) as err:
        lookup("v1.31.0")
    assert err.value.non_retryable
    assert "capa-ami-ubuntu-24.04-?1.31.0-*" in err.value.message
    assert CAPA_ORG in err.value.message


def test_resolve_uses_one_describe_call(aws: None) -> None:
    add_ami("capa-ami-ubuntu-24.04-v1.31.0-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    with session.counting_calls() as tally:
        choice = images.resolve_image(session.client("ec2", REGION), AMISelector(), "1.31.0", "t3.small")
    assert choice.name == "capa-ami-ubuntu-24.04-v1.31.0-1"
    assert tally == {"ec2:DescribeImages": 1}
