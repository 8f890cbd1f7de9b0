"""Paths tests share (importable as `tests.paths`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPA_TEMPLATE = ROOT.parent / "shared" / "capa" / "cluster-template.yaml"
QUICKSTART = ROOT / "examples" / "capi-quickstart.yaml"
