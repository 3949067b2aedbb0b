"""The deployment files, checked statically (no Docker engine here): the compose file is valid for
docker-compose and takes its configuration from the environment, the image installs the pinned dependencies
and serves the project's DAG folder, and the init job's entrypoint sets up Airflow as documented."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
AIRFLOW_SERVICES = {"airflow-scheduler", "airflow-dag-processor", "airflow-api-server"}


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: `make system` installs it"
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "AIRFLOW_", "UNITFUSION_"))
        },
    )


@pytest.fixture(scope="module")
def stack() -> dict:
    done = _compose_config(ENV_EXAMPLE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def _dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def test_compose_has_the_production_like_stack(stack):
    services = stack["services"]
    assert {"kafka", "postgres", "airflow-init"} | AIRFLOW_SERVICES <= set(services)
    assert "zookeeper" not in services
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])
    assert services["postgres"]["image"].startswith("postgres:")
    assert {"register", "postgres-data", "kafka-data"} <= set(stack["volumes"])


def test_airflow_services_share_image_database_store_and_init(stack):
    services = stack["services"]
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        service = services[name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert Path(service["build"]["context"]) == REPO
        env = service["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1]: v for v in service["volumes"]}
        store_mount = next(target for target in mounts if env["UNITFUSION_OUT"].startswith(target + "/"))
        assert "register" in str(mounts[store_mount])  # the run store lives on the named volume
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
    assert services["airflow-init"]["command"] in ("init", ["init"])
    commands = {str(services[name]["command"]).strip("[]'") for name in AIRFLOW_SERVICES}
    assert commands == {"scheduler", "dag-processor", "api-server"}


def test_configuration_comes_from_the_environment(tmp_path, stack):
    text = COMPOSE.read_text()
    for key, value in _env_lines(ENV_EXAMPLE.read_text()).items():
        if "CHANGE-ME" in value:
            assert value not in text, f"{key}: a secret is written into compose.yaml"
    # A value from the env file reaches the services ...
    env = _env_lines(ENV_EXAMPLE.read_text()) | {
        "POSTGRES_PASSWORD": "s3cret-from-env",
        "AIRFLOW_PORT": "18080",
    }
    changed = tmp_path / ".env"
    changed.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    done = _compose_config(changed)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert (
        ":s3cret-from-env@postgres"
        in services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret-from-env"
    assert "18080" in json.dumps(services["airflow-api-server"]["ports"])
    # ... and a missing secret stops the stack from starting instead of running with a default.
    del env["UNITFUSION_HMAC_KEY"]
    changed.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    done = _compose_config(changed)
    assert done.returncode != 0
    assert "UNITFUSION_HMAC_KEY" in done.stderr
    # The tokenisation key and alert targets go to the init job only (it stores them as connections).
    assert "UNITFUSION_HMAC_KEY" in stack["services"]["airflow-init"]["environment"]
    assert all(
        "UNITFUSION_HMAC_KEY" not in stack["services"][name]["environment"] for name in AIRFLOW_SERVICES
    )


def test_dockerfile_installs_the_lock_on_the_pinned_airflow_image():
    dockerfile = _dockerfile()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    assert pinned
    assert f"ARG AIRFLOW_VERSION={pinned.group(1)}" in dockerfile
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}", dockerfile, re.M)
    copy_lock = dockerfile.index("COPY --chown=airflow:0 requirements.lock")
    install_lock = dockerfile.index("pip install --no-cache-dir -r requirements.lock")
    assert copy_lock < install_lock
    assert re.search(r"pip install .*--no-deps -e \.", dockerfile)  # the package itself, nothing unpinned


def test_image_dag_folder_is_the_projects(stack):
    dockerfile = _dockerfile()
    workdir = re.findall(r"^WORKDIR (\S+)$", dockerfile, re.M)[-1]
    copied = re.search(r"^COPY (?:--\S+ )*dags (\S+)$", dockerfile, re.M)
    assert copied
    dags_in_image = os.path.normpath(os.path.join(workdir, copied.group(1)))
    assert f"AIRFLOW__CORE__DAGS_FOLDER={dags_in_image}" in dockerfile
    for name in AIRFLOW_SERVICES:
        assert stack["services"][name]["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == dags_in_image


def test_build_context_sends_what_the_dockerfile_copies():
    """BuildKit reads docker/Dockerfile.dockerignore; everything COPY names must get through it."""
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = [
        src
        for line in re.findall(r"^COPY (?:--\S+ )*(.+)$", _dockerfile(), re.M)
        for src in line.split()[:-1]
    ]
    assert sources and set(sources) <= allowed
    assert all((REPO / src).exists() for src in sources)


def test_entrypoint_passes_commands_through():
    done = subprocess.run(
        ["bash", str(DOCKER / "entrypoint.sh"), "echo", "hello"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and done.stdout == "hello\n"


def test_init_job_migrates_and_stores_connections(tmp_path):
    """The init job, run against SQLite with this venv's Airflow: the secrets end up as connections."""
    passwords = tmp_path / "auth" / "passwords.json"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_ADMIN_PASSWORD": 'pa"ss',
        "UNITFUSION_HMAC_KEY": 'key-with-"quotes"-0123456789',
        "UNITFUSION_WEBHOOK_URL": "http://127.0.0.1:9/alerts",
        "UNITFUSION_OUT": str(tmp_path / "store"),
    }
    env["UNITFUSION_SMTP_CONN"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": 2525,
            "extra": {"from": "uf@x.cn", "to": ["ops@x.cn"]},
        }
    )
    done = subprocess.run(
        ["bash", str(DOCKER / "entrypoint.sh"), "init"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "connections: unitfusion_hmac unitfusion_smtp unitfusion_webhook" in done.stdout
    assert json.loads(passwords.read_text()) == {"admin": 'pa"ss'}
    assert (tmp_path / "store").is_dir()

    read = (  # what the scheduler's tasks will read
        "import json; from airflow.models import Connection; from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    print(json.dumps({c.conn_id: [c.password, c.extra_dejson, c.host] for c in s.query(Connection)}))"
    )
    got = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    connections = json.loads(got.stdout.strip().splitlines()[-1])
    assert connections["unitfusion_hmac"][0] == 'key-with-"quotes"-0123456789'
    assert connections["unitfusion_webhook"][1:] == [{}, "http://127.0.0.1:9/alerts"]  # URL as host (http)
    assert connections["unitfusion_smtp"][1] == {"from": "uf@x.cn", "to": ["ops@x.cn"]}
