"""`apex-stream up` / `down` on a second, private pair of services (own folders and ports, the
``private_env`` fixture), so the services the rest of the suite uses are left alone."""

from __future__ import annotations

import subprocess

from apex_stream.services.probe import port_open
from tests.support.processes import cli


def live_pids(pattern: str) -> list[str]:
    """Pids of running (not zombie) processes whose command line contains ``pattern``."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True).stdout
    return [
        line.split()[0]
        for line in out.splitlines()
        if pattern in line and not line.split()[1].startswith("Z")
    ]


def ports(env: dict[str, str]) -> tuple[int, int, int]:
    """The private services' ports: Kafka's, its controller's, PostgreSQL's."""
    names = ("APEX_KAFKA_PORT", "APEX_KAFKA_CONTROLLER_PORT", "APEX_POSTGRES_PORT")
    kafka, controller, postgres = (int(env[name]) for name in names)
    return kafka, controller, postgres


def test_up_twice_is_harmless_and_down_leaves_nothing_running(private_env: dict[str, str]) -> None:
    kafka, controller, postgres = ports(private_env)
    try:
        first = cli("up", env=private_env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "started" in first.stdout
        assert port_open("127.0.0.1", kafka) and port_open("127.0.0.1", postgres)

        second = cli("up", env=private_env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert second.stdout.count("already up") == 2

        status = cli("status", env=private_env)
        assert status.returncode == 0 and status.stdout.count(" up ") == 2
    finally:
        down = cli("down", env=private_env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not port_open("127.0.0.1", kafka)
    assert not port_open("127.0.0.1", controller)
    assert not port_open("127.0.0.1", postgres)
    assert live_pids(private_env["APEX_HOME"]) == []
    assert live_pids(private_env["APEX_POSTGRES_DATA"]) == []

    status = cli("status", env=private_env)
    assert status.returncode == 3 and status.stdout.count(" down ") == 2
    again = cli("down", env=private_env)
    assert again.returncode == 0 and again.stdout.count("already down") == 2


def test_external_services_are_not_started(private_env: dict[str, str]) -> None:
    env = private_env | {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x",
    }
    result = cli("up", env=env)
    assert result.returncode == 0
    assert "nothing to start" in result.stdout
    assert not port_open("127.0.0.1", ports(private_env)[0])
