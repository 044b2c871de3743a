"""Fixtures of the integration tests."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from bench.harness.database import temporary_database


@pytest.fixture
def database() -> Iterator[str]:
    """The URL of a new, empty database on the configured server, dropped afterwards."""
    with temporary_database() as url:
        yield url


def unused_ports(n: int) -> list[int]:
    """``n`` distinct ports that nothing listens on now: the OS picks each (bind to port 0),
    all held at once so that none is picked twice."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def free_port() -> int:
    """A port for a service this test starts (handed to it through its environment)."""
    return unused_ports(1)[0]


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    """``free_ports(n)``: ``n`` distinct ports for the services this test starts."""
    return unused_ports


@pytest.fixture
def private_env(free_ports: Callable[[int], list[int]]) -> Iterator[dict[str, str]]:
    """The environment of a second, private pair of services (own folders and free ports):
    `apex-stream up` with it leaves the services the rest of the suite uses alone."""
    kafka, controller, postgres = free_ports(3)
    # a folder the postgres OS user can reach (pytest's tmp_path is private to root)
    tmp_path = Path(tempfile.mkdtemp(prefix="apex-services-"))
    tmp_path.chmod(0o755)
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    jars = Path(env.get("APEX_HOME", Path.home() / ".cache" / "apex-stream"))
    home = tmp_path / "home"
    home.mkdir()
    # share the downloaded jars; everything else is private
    for libs in jars.glob("kafka-*"):
        (home / libs.name).symlink_to(libs)
    yield env | {
        "APEX_HOME": str(home),
        "APEX_KAFKA_PORT": str(kafka),
        "APEX_KAFKA_CONTROLLER_PORT": str(controller),
        "APEX_POSTGRES_PORT": str(postgres),
        "APEX_POSTGRES_DATA": str(tmp_path / "pgdata"),
        "APEX_KAFKA_HEAP": "256m",
    }
    shutil.rmtree(tmp_path, ignore_errors=True)


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Headless Chromium from the system packages; selenium-manager never downloads anything."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "needs Debian's chromium and chromium-driver (scripts/setup installs them)"
    )
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en-US"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
