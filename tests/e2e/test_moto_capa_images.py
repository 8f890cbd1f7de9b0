"""moto, as `capt dev up` starts it, answers capt's real AMI lookup for any version."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from capt.activities.aws import images
from capt.spec.models import AMISelector

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ec2(tmp_path_factory: pytest.TempPathFactory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path_factory.mktemp("moto")
    log = (state / "moto.log").open("wb")  # noqa: SIM115 - open for the server's whole life
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "capt.dev.simulator.motoserver",
            "--amis",
            str(state / "amis.json"),
            "--region",
            "ap-northeast-2",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield boto3.client(
            "ec2",
            region_name="ap-northeast-2",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.parametrize(
    "version, instance_type, base_os, arch",
    [
        ("v1.31.2", "t3.large", "ubuntu-24.04", "x86_64"),
        ("v1.20.5", "m7g.large", "ubuntu-24.04", "arm64"),
        ("1.35.20", "t3.large", "ubuntu-22.04", "x86_64"),
    ],
)
def test_capt_finds_a_capa_image(ec2, version: str, instance_type: str, base_os: str, arch: str) -> None:
    choice = images.resolve_image(ec2, AMISelector(lookup_base_os=base_os), version, instance_type)
    assert choice.looked_up and choice.owner_id == "258751437250"
    assert choice.name.startswith(f"capa-ami-{base_os}-v{version.removeprefix('v')}-")
    described = ec2.describe_images(ImageIds=[choice.image_id])["Images"][0]
    assert described["Architecture"] == arch


def test_unknown_version_is_still_not_found(ec2) -> None:
    with pytest.raises(images.ImageNotFoundError):
        images.resolve_image(ec2, AMISelector(), "v1.19.0", "t3.large")


def test_default_images_are_kept(ec2) -> None:
    canonical = ec2.describe_images(Owners=["099720109477"])["Images"]
    assert canonical
