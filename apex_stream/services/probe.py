"""Small helpers to see whether a local service answers."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable

from ..errors import ServiceError


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
) -> None:
    """Poll ``check`` until it is true; raise ServiceError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(interval)


def require_binary(name: str, install_hint: str) -> str:
    """The path of an executable on PATH, or a ServiceError that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` not found on PATH: {install_hint}")
    return path
