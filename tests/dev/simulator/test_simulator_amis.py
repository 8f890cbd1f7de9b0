"""CAPA-style images for moto: names capt's lookup matches, stable ids, newer patches newer."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from capt.dev.simulator import amis
from capt.spec.models import AMISelector


def test_capa_names_match_the_lookup_pattern_for_every_version() -> None:
    images = amis.capa_images()
    assert len(images) == 16 * 21 * 2 * 2
    selector = AMISelector()
    for version in ("v1.20.0", "v1.31.2", "1.35.20"):
        pattern = selector.name_pattern(version)
        matched = [i for i in images if fnmatch.fnmatchcase(i["name"], pattern)]
        assert {(i["architecture"]) for i in matched} == {"x86_64", "arm64"}
        assert all(
            i["owner_id"] == selector.lookup_org and i["name"].startswith("capa-ami-ubuntu-24.04-")
            for i in matched
        )
    # "?" stands for the optional "v": v1.3.1 must not match v1.31.x
    assert not [i for i in images if fnmatch.fnmatchcase(i["name"], selector.name_pattern("v1.3.1"))]


def test_ids_are_stable_and_unique_and_later_patches_are_newer() -> None:
    a, b = amis.capa_images(), amis.capa_images()
    assert [i["ami_id"] for i in a] == [i["ami_id"] for i in b]
    assert len({i["ami_id"] for i in a}) == len(a)
    one = amis.capa_image("ubuntu-24.04", "v1.30.1", "x86_64")
    two = amis.capa_image("ubuntu-24.04", "v1.30.2", "x86_64")
    nxt = amis.capa_image("ubuntu-24.04", "v1.31.0", "x86_64")
    assert one["creation_date"] < two["creation_date"] < nxt["creation_date"]


def test_the_file_keeps_motos_default_images(tmp_path: Path) -> None:
    path = tmp_path / "amis.json"
    count = amis.write_amis_file(path, ["ap-northeast-2"])
    data = json.loads(path.read_text())
    assert len(data) == count > len(amis.capa_images())
    assert any(i.get("owner_id") == "099720109477" for i in data)  # Canonical's, for the bastion lookup
