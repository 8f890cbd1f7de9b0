"""Strict manifests (issue 17): every field a Cluster API / CAPA kind defines that capt does not
implement is refused as "not supported by capt" (and listed in the README), never dropped; the
real templates load with no unknown field."""

from __future__ import annotations

import copy

import pytest
import yaml

from spec import strict
from spec.errors import ManifestError
from spec.loader import load_manifest
from tests.support.paths import QUICKSTART, ROOT

BASE = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
CASES = [(kind, path) for kind, fields in strict.NOT_SUPPORTED.items() for path in fields]


def _set(body: dict, path: str, value) -> None:
    node = body
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


@pytest.mark.parametrize(("kind", "path"), CASES, ids=[f"{k}:{p}" for k, p in CASES])
def test_every_not_supported_field_is_refused_by_name(kind, path):
    docs = copy.deepcopy(BASE)
    if kind == "KubeadmConfigTemplate" or kind == "AWSMachineTemplate":
        doc = [d for d in docs if d["kind"] == kind][-1]
    else:
        doc = next(d for d in docs if d["kind"] == kind)
    _set(doc, path, {"x": 1})
    with pytest.raises(ManifestError) as exc:
        load_manifest(yaml.safe_dump_all(docs), env={})
    text = exc.value.render()
    assert f"{path}: is not supported by capt ({strict.NOT_SUPPORTED[kind][path]})" in text, text


def test_the_readme_lists_what_capt_does_not_support():
    readme = (ROOT / "README.md").read_text()
    for kind, fields in strict.NOT_SUPPORTED.items():
        for path, what in fields.items():
            assert f"- `{kind}` `{path}`: {what}" in readme, (kind, path)
