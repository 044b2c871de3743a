"""Seed 000's websocket clients, exactly as its document prints them (seed_000_websocket.md; only
the port changed to the test bridge's), against a real bridge with events produced to Kafka:
its Python client and the quick start's as subprocesses, its JavaScript client in Debian's
headless Chromium on a page of its own. Their output and console log go to the test's folder."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from websockets.asyncio.client import ClientConnection, connect

from apex_stream.client import EventProducer
from apex_stream.events import Outcome, Prediction
from apex_stream.settings import Settings
from apex_stream.topics import TopicAdmin
from bench.harness.processes import stop_process
from tests.support.bridge import running_bridge
from tests.support.events import opportunity, prediction
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SEED = Path(__file__).with_name("seed_000_websocket.md")
SEED_URL = "ws://localhost:8765"
SEED_FIELDS = (
    "prediction_score",
    "should_execute",
    "model_version_xgb",
    "model_version_onnx",
    "inference_time_ms",
)
# console.log recorded (objects as JSON) before the seed's script runs
RECORDER = """<script>
window.logged = [];
const log = console.log.bind(console);
console.log = (...args) => {
  window.logged.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))));
  log(...args);
};
</script>"""


def seed_code(language: str, containing: str) -> str:
    """The seed's code block in ``language`` that contains ``containing``."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", SEED.read_text(), re.S)
    (code,) = [code for lang, code in blocks if lang == language and containing in code]
    return code


def on_port(code: str, port: int) -> str:
    assert code.count(SEED_URL) == 1
    return code.replace(SEED_URL, f"ws://localhost:{port}")


def predictions(first: int, n: int) -> list[Prediction]:
    return [prediction(i, score=round(0.05 + 0.9 * (i % 10) / 10, 2)) for i in range(first, n)]


def seed_view(p: Prediction) -> dict[str, Any]:
    """What seed 000's fields must say of ``p``."""
    return {
        "prediction_score": p.score,
        "should_execute": p.decision,
        "model_version_xgb": p.model_versions["xgboost"],
        "model_version_onnx": p.model_versions["onnx"],
        "inference_time_ms": p.latency_ms,
    }


async def create_topics(settings: Settings) -> None:
    async with TopicAdmin(settings) as admin:
        await admin.create()


async def reply(ws: ClientConnection) -> Any:
    """The next frame that is not a heartbeat."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if not (isinstance(message, dict) and message["type"] == "heartbeat"):
            return message


async def test_seed_000_python_clients_work_unchanged(
    settings: Settings, tmp_path: Path, free_port: int
) -> None:
    await create_topics(settings)
    port = free_port
    with running_bridge(settings, port, tmp_path / "bridge.log"):
        # the quick start: `python -c "..."` prints the first frame, a JSON object
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        quick = subprocess.run(
            ["bash", "-c", on_port(seed_code("bash", "websockets.connect"), port)],
            env=os.environ | {"PATH": path},
            capture_output=True,
            text=True,
            timeout=60,
        )
        (tmp_path / "quick_start.out").write_text(quick.stdout + quick.stderr)
        assert quick.returncode == 0, quick.stderr
        hello = json.loads(quick.stdout)
        assert hello["type"] == "connection" and hello["framing"] == "event"

        # seed commands by `command`, and the framing either path may choose
        async with (
            connect(f"ws://127.0.0.1:{port}/") as seed,
            connect(f"ws://127.0.0.1:{port}/ws") as ours,
        ):
            assert (await reply(seed))["framing"] == "event"
            assert (await reply(ours))["framing"] == "array"
            for name, answer in (("ping", "pong"), ("stats", "stats")):
                await seed.send(json.dumps({"command": name}))
                assert (await reply(seed))["type"] == answer
            await seed.send(
                json.dumps(
                    {"command": "subscribe", "channels": ["predictions"], "framing": "array"}
                )
            )
            await ours.send(
                json.dumps({"type": "subscribe", "channels": ["predictions"], "framing": "event"})
            )
            assert (await reply(seed))["framing"] == "array"
            assert (await reply(ours))["framing"] == "event"
            sent = predictions(0, 3)
            async with EventProducer(settings) as producer:
                await producer.send_many(sent)
            got: list[dict[str, Any]] = []
            while len(got) < len(sent):
                frame = await reply(seed)
                assert isinstance(frame, list)
                got += frame
            for _ in sent:
                frame = await reply(ours)
                assert isinstance(frame, dict) and frame["type"] == "prediction"

        # section 3's client: subscribes by `command`, prints every message's type and a
        # prediction's `prediction_score`
        script = tmp_path / "seed_client.py"
        script.write_text(on_port(seed_code("python", "async for message"), port))
        out = tmp_path / "seed_client.out"
        with out.open("wb") as sink:
            client = subprocess.Popen(
                [sys.executable, "-u", str(script)], stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            await wait_for(
                lambda: "Received: subscribed" in out.read_text() or client.poll() is not None,
                30,
                "the seed client's subscription",
                every=0.1,
            )
            sent = predictions(3, 13)
            async with EventProducer(settings) as producer:
                await producer.send(opportunity(1, "r1", ["WETH", "USDC"]))
                await producer.send_many(sent)
            await wait_for(
                lambda: out.read_text().count("Score:") >= len(sent) or client.poll() is not None,
                30,
                "the seed client printing every prediction's score",
                every=0.1,
            )
            assert client.poll() is None, out.read_text()  # still reading: nothing it choked on
        finally:
            stop_process(client)
    lines = [line for line in out.read_text().splitlines() if line != "Received: heartbeat"]
    assert lines[:2] == ["Received: connection", "Received: subscribed"]
    assert "Received: opportunity" in lines
    scores = [float(line.removeprefix("  Score: ")) for line in lines if "Score:" in line]
    assert sorted(scores) == sorted(p.score for p in sent)
    for i, line in enumerate(lines):
        if line.startswith("  Score: "):
            assert lines[i - 1] == "Received: prediction"


@contextmanager
def serving(page: str, port: int) -> Iterator[None]:
    """``page`` at http://127.0.0.1:port/: a seed user's own page, on an origin of its own."""
    body = page.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def logged(browser: WebDriver) -> list[list[str]]:
    return browser.execute_script("return window.logged")  # type: ignore[no-any-return]


def logged_data(browser: WebDriver, label: str) -> list[dict[str, Any]]:
    """The data the seed's client logged after ``label``."""
    return [json.loads(args[1]) for args in logged(browser) if args[0] == label]


async def test_seed_000_javascript_client_works_unchanged_in_chromium(
    settings: Settings,
    tmp_path: Path,
    browser: WebDriver,
    free_ports: Callable[[int], list[int]],
) -> None:
    await create_topics(settings)
    bridge_port, page_port = free_ports(2)
    client = on_port(seed_code("javascript", "new WebSocket"), bridge_port)
    page = f'<!doctype html>\n<meta charset="utf-8">\n{RECORDER}\n<script>\n{client}</script>\n'
    with serving(page, page_port), running_bridge(settings, bridge_port, tmp_path / "bridge.log"):
        browser.get(f"http://127.0.0.1:{page_port}/")
        WebDriverWait(browser, 20, 0.1).until(lambda d: ["Connected to APEX stream"] in logged(d))
        # it subscribes as it connects: produce until its predictions come
        sent: list[Prediction] = []
        async with EventProducer(settings) as producer:
            deadline = time.monotonic() + 30
            while not logged_data(browser, "Prediction result:"):
                assert time.monotonic() < deadline, logged(browser)
                batch = predictions(len(sent), len(sent) + 5)
                await producer.send_many(batch)
                await producer.flush()
                sent += batch
                await asyncio.sleep(0.2)
            await producer.send(opportunity(1, "r1", ["WETH", "USDC"]))
            last = predictions(len(sent), len(sent) + 5)
            await producer.send_many(last)
            await producer.send(
                Outcome(
                    opportunity_id=last[0].opportunity_id,
                    route_id="r1",
                    chain="ethereum",
                    success=True,
                    realized_profit_usd=4.0,
                    gas_used=150_000,
                    gas_cost_usd=1.0,
                    executed_at=time.time(),
                )
            )
            sent += last
        WebDriverWait(browser, 20, 0.1).until(
            lambda d: logged_data(d, "Execution result:") and logged_data(d, "New opportunity:")
        )
        WebDriverWait(browser, 20, 0.1).until(
            lambda d: (
                {p["opportunity_id"] for p in logged_data(d, "Prediction result:")}
                >= {p.opportunity_id for p in last}
            )
        )
        (tmp_path / "seed_js_console.json").write_text(json.dumps(logged(browser), indent=1))
        by_id = {p.opportunity_id: p for p in sent}
        for data in logged_data(browser, "Prediction result:"):
            p = by_id[data["opportunity_id"]]
            assert data["score"] == p.score and data["decision"] == p.decision  # ours
            assert {k: data[k] for k in SEED_FIELDS} == seed_view(p)  # and the seed's
        assert logged_data(browser, "Execution result:")[0]["success"] is True
        assert logged_data(browser, "New opportunity:")[0]["route_id"] == "r1"
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
