"""`capt dev` command wiring and the commands that need no running stack."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from capt.dev.stack.cli import dev
from capt.dev.stack.config import DevConfig, save_config


def test_capt_registers_the_dev_group() -> None:
    from capt import cli

    assert cli.main.get_command(None, "dev") is dev  # type: ignore[arg-type]


def test_env_of_a_stopped_stack_prints_exports_and_a_note(tmp_path: Path) -> None:
    save_config(DevConfig(state_dir=tmp_path, temporal_port=17233, moto_port=15000))
    result = CliRunner().invoke(dev, ["env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "export TEMPORAL_ADDRESS=127.0.0.1:17233\n" in result.stdout
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:15000\n" in result.stdout
    assert "not running" in result.stderr
    assert "not running" not in result.stdout  # stdout stays eval-able


def test_status_of_a_stopped_stack(tmp_path: Path) -> None:
    result = CliRunner().invoke(dev, ["status", "-o", "json", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False
    assert [(s["name"], s["state"], s["pid"]) for s in data["services"]] == [
        ("temporal", "stopped", None),
        ("codec", "stopped", None),
        ("moto", "stopped", None),
        ("simulator", "stopped", None),
        ("worker", "stopped", None),
    ]


def test_down_with_nothing_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(dev, ["down", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "nothing to stop" in result.stdout
