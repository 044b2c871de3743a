"""The bridge's HTTP side: which requests become websockets, and their admission."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from apex_stream.bridge.server import Bridge
from apex_stream.settings import Settings

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade"}


def answer(bridge: Bridge, path: str, **headers: str) -> int | None:
    """The status the bridge answers a request with; ``None``: on to the websocket handshake."""
    response = bridge.http(None, Request(path, Headers(headers)))  # type: ignore[arg-type]
    return None if response is None else response.status_code


@pytest.mark.parametrize("path", ["/", "/ws", "/?token=x"])
def test_websocket_requests_are_admitted_on_the_root_path_as_on_ws(path: str) -> None:
    assert answer(Bridge(Settings()), path, **UPGRADE) is None


def test_a_plain_get_of_the_root_path_still_serves_the_dashboard() -> None:
    bridge = Bridge(Settings())
    assert answer(bridge, "/") == HTTPStatus.OK
    response = bridge.http(None, Request("/", Headers()))  # type: ignore[arg-type]
    assert response is not None and response.body == bridge.dashboard


@pytest.mark.parametrize("path", ["/", "/ws"])
def test_the_root_path_admits_as_ws_does(path: str) -> None:
    bridge = Bridge(Settings(bridge_token="s3cret", bridge_max_clients=1))
    assert answer(bridge, path, **UPGRADE) == HTTPStatus.UNAUTHORIZED
    assert answer(bridge, path, **UPGRADE, Authorization="Bearer no") == HTTPStatus.UNAUTHORIZED
    assert answer(bridge, f"{path}?token=s3cret", **UPGRADE) is None
    bridge.hub.connect()
    assert answer(bridge, f"{path}?token=s3cret", **UPGRADE) == HTTPStatus.SERVICE_UNAVAILABLE
