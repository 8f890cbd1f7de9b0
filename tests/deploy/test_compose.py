"""Structure of docker-compose.yml and the worker Dockerfile (no Docker engine here)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from capt import worker

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def container_ports(svc: dict) -> set[int]:
    """Ports a service listens on inside the compose network (`ports` container side, `expose`)."""
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])}
    return ports | {int(p) for p in svc.get("expose", [])}


def host_port_map(svc: dict) -> dict[int, int]:
    return {int(str(p).split(":")[-2]): int(str(p).split(":")[-1]) for p in svc.get("ports", [])}


def depends(svc: dict) -> dict[str, dict]:
    deps = svc.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must use the long form with conditions"
    return deps


def dockerfile_instruction(name: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_the_whole_system_is_declared() -> None:
    assert set(SERVICES) == {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "worker",
        "codec",
        "moto",
    }
    assert SERVICES["postgresql"]["image"].startswith("postgres:")
    assert SERVICES["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert SERVICES["temporal"]["image"].startswith("temporalio/server:")
    assert SERVICES["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert SERVICES["moto"]["image"].startswith("motoserver/moto:")
    for name in ("worker", "temporal-setup", "codec"):
        assert SERVICES[name]["build"] == "."


def test_only_moto_is_behind_the_demo_profile() -> None:
    assert SERVICES["moto"]["profiles"] == ["demo"]
    assert [n for n, s in SERVICES.items() if "profiles" in s] == ["moto"]


def test_published_ports_match_the_local_stack() -> None:
    assert host_port_map(SERVICES["temporal"]) == {7233: 7233}
    assert host_port_map(SERVICES["temporal-ui"]) == {8233: 8080}
    assert host_port_map(SERVICES["moto"]) == {5000: 5000}
    assert host_port_map(SERVICES["codec"]) == {8081: 8081}


def test_payloads_are_encrypted_with_one_key_file_and_the_ui_decodes_through_the_codec() -> None:
    secret = COMPOSE["secrets"]["capt-codec-keys"]
    assert secret["file"] == "./deploy/codec-keys.json"
    assert "deploy/codec-keys.json" in (ROOT / ".gitignore").read_text()  # never committed
    for name in ("worker", "codec"):
        svc = SERVICES[name]
        assert svc["secrets"] == ["capt-codec-keys"]
        assert svc["environment"]["CAPT_CODEC_KEY_FILE"] == "/run/secrets/capt-codec-keys"
        assert "CAPT_INSECURE_PLAINTEXT" not in svc["environment"]
    entry = SERVICES["codec"]["entrypoint"]
    assert entry[:3] == ["capt", "codec", "server"] and entry[entry.index("--port") + 1] == "8081"
    ui_origin = "http://localhost:" + str(next(iter(host_port_map(SERVICES["temporal-ui"]))))
    assert entry[entry.index("--origin") + 1] == ui_origin
    assert SERVICES["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"] == "http://localhost:8081"


def test_dependencies_exist_have_conditions_and_healthchecks() -> None:
    for name, svc in SERVICES.items():
        for dep, spec in depends(svc).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], (
                    f"{name} waits for {dep} to be healthy; {dep} has no healthcheck"
                )
            if "profiles" in SERVICES[dep]:
                assert spec.get("required") is False, f"{name} must not require profile-only {dep}"


def test_start_order() -> None:
    assert depends(SERVICES["temporal-schema"]) == {"postgresql": {"condition": "service_healthy"}}
    assert depends(SERVICES["temporal"])["temporal-schema"]["condition"] == "service_completed_successfully"
    assert depends(SERVICES["temporal-setup"])["temporal"]["condition"] == "service_healthy"
    assert depends(SERVICES["temporal-ui"])["temporal"]["condition"] == "service_healthy"
    worker_deps = depends(SERVICES["worker"])
    assert worker_deps["temporal"]["condition"] == "service_healthy"
    assert worker_deps["temporal-setup"]["condition"] == "service_completed_successfully"


def test_no_dependency_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(name: str) -> None:
        if seen.get(name) == 1:
            pytest.fail(f"dependency cycle through {name}")
        if seen.get(name) == 2:
            return
        seen[name] = 1
        for dep in depends(SERVICES[name]):
            visit(dep)
        seen[name] = 2

    for name in SERVICES:
        visit(name)


@pytest.mark.parametrize("client", ["worker", "temporal-ui", "temporal-setup"])
def test_temporal_address_points_at_the_temporal_frontend(client: str) -> None:
    address = SERVICES[client]["environment"]["TEMPORAL_ADDRESS"]
    host, port = address.rsplit(":", 1)
    assert host in SERVICES, f"{client}: TEMPORAL_ADDRESS host {host} is not a service"
    assert int(port) in container_ports(SERVICES[host]), f"{host} does not expose {port}"
    assert SERVICES[host]["image"].startswith("temporalio/server:")
    assert host in depends(SERVICES[client])


def test_temporal_database_settings_match_postgres() -> None:
    pg = SERVICES["postgresql"]["environment"]
    for name in ("temporal-schema", "temporal"):
        env = SERVICES[name]["environment"]
        assert env["POSTGRES_SEEDS"] in SERVICES and SERVICES[env["POSTGRES_SEEDS"]] is SERVICES["postgresql"]
        assert int(env["DB_PORT"]) in container_ports(SERVICES["postgresql"])
        assert env["POSTGRES_USER"] == pg["POSTGRES_USER"]
        assert env["POSTGRES_PWD"] == pg["POSTGRES_PASSWORD"]
        assert env["DB"] == "postgres12"
    schema_script = "\n".join(SERVICES["temporal-schema"]["command"])
    for db in ("temporal", "temporal_visibility"):
        assert db in schema_script
    for verb in ("create", "setup-schema", "update-schema"):
        assert verb in schema_script


def test_dynamic_config_file_is_mounted() -> None:
    temporal = SERVICES["temporal"]
    (volume,) = temporal["volumes"]
    source, target = volume.split(":")[:2]
    config_path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert target == "/etc/temporal/" + str(Path(config_path).parent)
    mounted = ROOT / source / Path(config_path).name
    assert mounted.is_file()
    assert isinstance(yaml.safe_load(mounted.read_text()), dict)


def test_worker_environment() -> None:
    svc = SERVICES["worker"]
    env = svc["environment"]
    assert env["CAPT_TASK_QUEUE"] == worker.DEFAULT_TASK_QUEUE
    assert env["TEMPORAL_NAMESPACE"] == SERVICES["temporal-setup"]["environment"]["TEMPORAL_NAMESPACE"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"]
    # Real AWS by default; the demo passes AWS_ENDPOINT_URL=http://moto:5000 through.
    for passthrough in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert passthrough in env and env[passthrough] is None
    assert int(env["CAPT_METRICS_PORT"]) in container_ports(svc)
    assert env["CAPT_METRICS_HOST"] == "0.0.0.0"
    # docker stop must give in-flight activities their graceful-shutdown time.
    grace = int(svc["stop_grace_period"].rstrip("s"))
    assert grace > float(env["CAPT_WORKER_GRACEFUL_SHUTDOWN"])


def test_worker_healthcheck_uses_the_ready_file_the_image_configures() -> None:
    env_lines = " ".join(dockerfile_instruction("ENV"))
    ready = re.search(r"CAPT_WORKER_READY_FILE=(\S+)", env_lines)
    assert ready, "the Dockerfile must set CAPT_WORKER_READY_FILE"
    assert ready.group(1) in SERVICES["worker"]["healthcheck"]["test"]


def test_dockerfile_runs_capt_worker() -> None:
    (entrypoint,) = dockerfile_instruction("ENTRYPOINT")
    assert json.loads(entrypoint) == ["capt-worker"]
    assert dockerfile_instruction("FROM")[0].startswith("python:3.11")
    assert any("pip install" in run for run in dockerfile_instruction("RUN"))
    assert dockerfile_instruction("USER"), "the worker must not run as root"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["capt-worker"] == "capt.worker:main"


def test_setup_job_runs_the_shared_search_attribute_setup() -> None:
    entrypoint = SERVICES["temporal-setup"]["entrypoint"]
    assert entrypoint[:3] == ["python", "-m", "capt.client.temporal_setup"]
    assert (ROOT / "capt" / "client" / "temporal_setup.py").is_file()


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".capt", ".git", "deploy/codec-keys.json"):  # keys never in the image
        assert path in ignored
