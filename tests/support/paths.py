"""Paths tests share (importable as `tests.support.paths`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPA_TEMPLATE = ROOT.parent / "shared" / "capa" / "cluster-template.yaml"
QUICKSTART = ROOT / "examples" / "capi-quickstart.yaml"
