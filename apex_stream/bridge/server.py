"""`apex-stream bridge`: websocket clients, the dashboard, health and metrics on one port.

Websockets are accepted on ``/ws`` (relayed envelopes framed as arrays) and on ``/``, seed
000's URL (``ws://localhost:8765``; one envelope per frame), with the same admission; a plain
GET of ``/`` serves the dashboard.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import time
from http import HTTPStatus
from importlib.metadata import version
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Origin

from ..settings import Settings
from . import metrics
from .hub import Client, Hub
from .protocol import (
    CHANNELS,
    Filter,
    Framing,
    Ping,
    ProtocolError,
    Stats,
    Subscribe,
    Unsubscribe,
    control,
    parse_command,
    since_ms,
)
from .relay import Relay, replay

log = logging.getLogger(__name__)
VERSION = version("apex-stream")
WS_PATH = "/ws"
#: Seed 000's clients connect to the root path and expect one event per frame.
SEED_PATH = "/"
FRAMING: dict[str, Framing] = {WS_PATH: "array", SEED_PATH: "event"}
SEND_BUFFER = 256 * 1024


class Bridge:
    """The relay, the hub and the websocket/HTTP server of one bridge process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = Hub(settings.bridge_client_queue, settings.bridge_max_frame_bytes // 4)
        self.relay = Relay(settings, self.hub)
        self.registry = CollectorRegistry()
        self.registry.register(metrics.HubCollector(self.hub))
        self.started = time.time()
        self.dashboard = (files(__package__) / "static" / "dashboard.html").read_bytes()
        self._replays = asyncio.Semaphore(4)

    async def run(self) -> None:
        s = self.settings
        async with serve(
            self.handle,
            s.bridge_host,
            s.bridge_port,
            process_request=self.http,
            origins=[*map(Origin, s.bridge_origins), None] if s.bridge_origins else None,
            max_size=s.bridge_max_command_bytes,
            compression=None,
        ) as server:
            base = f"{s.bridge_host}:{s.bridge_port}"
            log.info(
                "bridge on ws://%s%s (arrays) and ws://%s%s (one event per frame), "
                "dashboard http://%s/",
                base,
                WS_PATH,
                base,
                SEED_PATH,
                base,
            )
            await asyncio.gather(self.relay.run(), self._heartbeats(), server.serve_forever())

    # -- HTTP: dashboard, health, metrics; admission of websocket clients ----------------------

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == WS_PATH or (path == SEED_PATH and _upgrade(request)):
            return self._admit(request)
        if path == "/":
            return _response(HTTPStatus.OK, self.dashboard, "text/html; charset=utf-8")
        if path == "/health":
            return _response(HTTPStatus.OK, json.dumps(self.health()).encode(), "application/json")
        if path == "/metrics":
            body = generate_latest(metrics.REGISTRY) + generate_latest(self.registry)
            return _response(HTTPStatus.OK, body, "text/plain; version=0.0.4")
        return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _admit(self, request: Request) -> Response | None:
        token = self.settings.bridge_token
        if token is not None:
            given = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = auth.removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                metrics.REJECTED.labels("auth").inc()
                return _response(HTTPStatus.UNAUTHORIZED, b"missing or wrong token\n", "text/plain")
        if len(self.hub.clients) >= self.settings.bridge_max_clients:
            metrics.REJECTED.labels("full").inc()
            return _response(HTTPStatus.SERVICE_UNAVAILABLE, b"too many clients\n", "text/plain")
        return None

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.relay.ready.is_set() else "starting",
            "version": VERSION,
            "uptime_s": round(time.time() - self.started, 1),
            "clients": len(self.hub.clients),
            "relayed": self.hub.relayed,
            "delivered": self.hub.delivered,
            "dropped": self.hub.dropped,
        }

    # -- websocket clients ---------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        # a small kernel send buffer keeps a stalled client's backlog in its bounded queue
        ws.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER
        )
        assert ws.request is not None  # set by the handshake that admitted this client
        client = self.hub.connect(FRAMING[urlsplit(ws.request.path).path])
        pump = asyncio.create_task(self._pump(client, ws))
        client.control(
            control(
                "connection",
                server="apex-stream bridge",
                version=VERSION,
                client_id=client.id,
                channels=list(CHANNELS),
                heartbeat_s=self.settings.bridge_heartbeat_s,
                framing=client.framing,
            )
        )
        rate = self.settings.bridge_command_rate
        bucket = _Bucket(rate)
        limited = control("error", error=f"rate limit: at most {rate:g} commands/s")
        try:
            async for frame in ws:
                if not bucket.take():
                    client.control(limited)
                    continue
                await self._command(client, frame)
        except ConnectionClosed:
            pass
        finally:
            self.hub.disconnect(client)
            pump.cancel()

    async def _pump(self, client: Client, ws: ServerConnection) -> None:
        """Sends what the client has pending; a slow socket only ever blocks this task, and a
        client that takes nothing for ``bridge_stall_timeout_s`` is disconnected."""
        limit = self.settings.bridge_max_frame_bytes
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                for frame in client.frames(limit):
                    async with asyncio.timeout(self.settings.bridge_stall_timeout_s):
                        await ws.send(frame, text=True)
        except ConnectionClosed:
            pass
        except TimeoutError:
            metrics.DISCONNECTED.labels("stalled").inc()
            log.warning(
                "client %d took nothing for %.0f s: disconnected (%d dropped)",
                client.id,
                self.settings.bridge_stall_timeout_s,
                client.dropped,
            )
            ws.transport.abort()

    async def _command(self, client: Client, frame: str | bytes) -> None:
        try:
            command = parse_command(frame)
        except ProtocolError as exc:
            metrics.COMMANDS.labels("invalid").inc()
            client.control(control("error", error=str(exc)))
            return
        kind = type(command).__name__.lower()
        metrics.COMMANDS.labels(kind).inc()
        if isinstance(command, Ping):
            client.control(control("pong", id=command.id, time=time.time()))
        elif isinstance(command, Stats):
            client.control(control("stats", id=command.id, **self.stats(client)))
        elif isinstance(command, Unsubscribe):
            channels = command.channels or list(client.subscriptions)
            self.hub.unsubscribe(client, channels)
            client.control(control("unsubscribed", id=command.id, channels=channels))
        elif isinstance(command, Subscribe):
            self._subscribe(client, command)

    def _subscribe(self, client: Client, command: Subscribe) -> None:
        if command.since is not None:
            again = sorted(set(command.channels) & client.subscriptions.keys())
            if again:
                client.control(
                    control(
                        "error",
                        id=command.id,
                        error=(f"already subscribed to {again}: unsubscribe first to replay"),
                    )
                )
                return
        filters = command.filters
        if command.framing is not None:
            client.framing = command.framing
        for channel in command.channels:
            self.hub.subscribe(client, channel, filters, hold=command.since is not None)
        framing = {"framing": command.framing} if command.framing is not None else {}
        client.control(
            control(
                "subscribed",
                id=command.id,
                channels=command.channels,
                filters=_plain(filters),
                **framing,
            )
        )
        if command.since is not None:
            start = since_ms(command.since)
            for channel in command.channels:
                until = dict(self.hub.positions[channel])
                asyncio.create_task(self._replay(client, channel, start, until))

    async def _replay(
        self, client: Client, channel: str, start: int | dict[int, int], until: dict[int, int]
    ) -> None:
        """History up to ``until`` (where live delivery resumes), then the held live messages."""
        sent = 0
        flt = client.subscriptions.get(channel)
        try:
            async with self._replays:
                async for batch in replay(
                    self.settings,
                    CHANNELS[channel],
                    start,
                    until,
                    self.settings.bridge_replay_max,
                    self.relay.routes,
                ):
                    if client.subscriptions.get(channel) is not flt or flt is None:
                        return  # unsubscribed or gone meanwhile
                    selected = batch.select(flt.mask(batch))
                    client.push(self.hub.items(selected, client.framing), len(selected))
                    sent += len(selected)
        except Exception as exc:  # a failed replay must not take the connection down
            log.exception("replay of %s failed", channel)
            client.control(control("error", error=f"replay of {channel} failed: {exc}"))
        if client.subscriptions.get(channel) is flt and flt is not None:
            self.hub.release(client, channel, control("replayed", channel=channel, messages=sent))

    def stats(self, client: Client) -> dict[str, Any]:
        return {
            "client": {
                "id": client.id,
                "framing": client.framing,
                "subscriptions": {c: _plain(f) for c, f in client.subscriptions.items()},
                "delivered": client.delivered,
                "dropped": client.dropped,
                "queued": client.queued,
            },
            "server": self.health() | {"lag": self._lag()},
        }

    def _lag(self) -> dict[str, int]:
        consumer = self.relay.consumer
        lag: dict[str, int] = {}
        if consumer is None:
            return lag
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            channel = self.relay.by_topic[tp.topic].name
            position = self.hub.positions[channel].get(tp.partition)
            if high is not None and position is not None:
                lag[channel] = lag.get(channel, 0) + max(0, high - position)
        return lag

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.bridge_heartbeat_s)
            now = time.time()
            clients = len(self.hub.clients)
            for client in list(self.hub.clients.values()):
                client.control(
                    control("heartbeat", time=now, clients=clients, dropped=client.dropped)
                )


class _Bucket:
    """Token bucket: ``rate`` commands per second, bursts of as many."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _upgrade(request: Request) -> bool:
    """Whether the request asks for a websocket (a browser's page load of ``/`` does not)."""
    return any("websocket" in v.lower() for v in request.headers.get_all("Upgrade"))


def _plain(flt: Filter) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(flt).items() if v is not None}


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


async def serve_bridge(settings: Settings) -> None:
    """Run a bridge until cancelled."""
    await Bridge(settings).run()
