"""The dashboard in a real browser: Debian's headless Chromium (chromium, chromium-driver) opens
it from a real bridge, predictions, an alert and a metric go through Kafka, and the page shows
them; it reconnects by itself after the bridge restarts."""

from __future__ import annotations

import asyncio
import random
import re
import struct
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from apex_stream.client import EventProducer
from apex_stream.events import Alert, Metric, Prediction
from apex_stream.settings import Settings
from apex_stream.topics import TopicAdmin
from tests.support.bridge import running_bridge

VERSIONS = {"xgboost": "1.0.0", "onnx": "1.1.0", "online": "1.0.7"}
TOKEN = "dashboard-test-token"

pytestmark = pytest.mark.slow


def predictions(n: int) -> list[Prediction]:
    now = time.time()
    out = []
    for _ in range(n):
        scores = {member: random.random() for member in VERSIONS}
        score = sum(scores.values()) / len(scores)
        out.append(
            Prediction(
                opportunity_id=f"opp-{uuid.uuid4().hex[:16]}",
                route_id=f"route-{random.randrange(20)}",
                chain=random.choice(["ethereum", "arbitrum", "base"]),
                score=score,
                decision=score > 0.5,
                threshold=0.5,
                strategy="weighted",
                model_scores=scores,
                model_versions=VERSIONS,
                latency_ms=random.uniform(0.5, 9.0),
                opportunity_timestamp=now - 0.05,
                timestamp=now,
                recommendation="EXECUTE" if score > 0.5 else "SKIP",
                confidence=max(score, 1 - score),
            )
        )
    return out


async def produce(settings: Settings, rounds: int, per_round: int) -> list[Prediction]:
    """``rounds`` batches of predictions half a second apart, so the sparklines see several s."""
    sent: list[Prediction] = []
    async with EventProducer(settings) as producer:
        for _ in range(rounds):
            batch = predictions(per_round)
            await producer.send_many(batch)
            await producer.flush()
            sent += batch
            await asyncio.sleep(0.5)
    return sent


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_counted(driver: WebDriver, sent: list[Prediction]) -> None:
    """Until the decision share counts every prediction sent, and exactly those executable."""
    executable = sum(p.decision for p in sent)
    expected = f"{executable:,} of {len(sent):,} predictions executable"
    WebDriverWait(driver, 30, 0.2).until(lambda d: expected in text(d, "decision-share"))
    assert f"{100 * executable / len(sent):.1f}%" in text(driver, "decision-share")


async def test_dashboard_shows_live_predictions_and_reconnects(
    settings: Settings, tmp_path: Path, browser: WebDriver, free_port: int
) -> None:
    port = free_port  # the restarted bridge comes back on the same port
    async with TopicAdmin(settings) as admin:
        await admin.create()
    env = {"APEX_BRIDGE_TOKEN": TOKEN}
    with running_bridge(settings, port, tmp_path / "bridge.log", **env):
        browser.get(f"http://127.0.0.1:{port}/?token={TOKEN}")
        WebDriverWait(browser, 20, 0.1).until(lambda d: text(d, "status") == "live")
        sent = await produce(settings, rounds=6, per_round=250)
        async with EventProducer(settings) as producer:
            await producer.send(
                Alert(
                    alert_id="a1",
                    kind="drift",
                    severity="warning",
                    message="PSI 0.31 on gas",
                    data={},
                )
            )
            await producer.send(Metric(source="worker-1", values={"scored_per_s": 1234.0}))
        wait_counted(browser, sent)
        WebDriverWait(browser, 10, 0.2).until(lambda d: "PSI 0.31 on gas" in text(d, "alerts"))
        WebDriverWait(browser, 10, 0.2).until(lambda d: "worker-1" in text(d, "metrics"))

        rows = browser.find_elements(By.CSS_SELECTOR, "#predictions tr")
        ids = [row.get_attribute("data-id") for row in rows]
        assert len(ids) == 50 and set(ids) <= {p.opportunity_id for p in sent}
        assert "WARNING" in text(browser, "alerts").upper()

        # mean score per member@version, as the models panel shows it (3 decimals)
        shown = dict(re.findall(r"(\w+@[\d.]+)\s+([\d.]+)", text(browser, "models")))
        assert shown.keys() == {f"{m}@{v}" for m, v in VERSIONS.items()}
        for member, version in VERSIONS.items():
            mean = sum(p.model_scores[member] for p in sent) / len(sent)
            assert abs(float(shown[f"{member}@{version}"]) - mean) < 0.0015

        # the sparklines drew more than their baseline
        for canvas in ("throughput", "latency"):
            painted = browser.execute_script(
                "const c = document.getElementById(arguments[0]);"
                "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;",
                canvas,
            )
            width = browser.execute_script(f"return document.getElementById('{canvas}').width")
            assert painted > 3 * width, (canvas, painted)

        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot))
        pixels = png_pixels(shot.read_bytes())[..., :3].reshape(-1, 3)
        colours = len(np.unique(pixels, axis=0))
        assert colours > 200 and pixels.std() > 10, (colours, pixels.std())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

    # the bridge is gone: the page says so, and comes back by itself when it returns
    WebDriverWait(browser, 10, 0.1).until(lambda d: text(d, "status") != "live")
    with running_bridge(settings, port, tmp_path / "bridge2.log", **env):
        WebDriverWait(browser, 20, 0.1).until(lambda d: text(d, "status") == "live")
        more = await produce(settings, rounds=2, per_round=100)
        wait_counted(browser, sent + more)
        newest = browser.find_element(By.CSS_SELECTOR, "#predictions tr").get_attribute("data-id")
        assert newest in {p.opportunity_id for p in more}


def png_pixels(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) to (height, width, c)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for y in range(height):  # undo each row's filter (PNG spec, section 9)
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 0:
            cur = row
        elif kind == 1:  # Sub: a running sum along the row, per channel
            cur = row.reshape(width, bpp).cumsum(axis=0).ravel() % 256
        elif kind == 2:  # Up
            cur = (row + prev) % 256
        else:  # Average and Paeth depend on the byte just decoded: byte by byte
            r, p, acc = row.tolist(), prev.tolist(), [0] * stride
            for i in range(stride):
                a = acc[i - bpp] if i >= bpp else 0
                if kind == 3:
                    acc[i] = (r[i] + (a + p[i]) // 2) & 255
                else:
                    b, c = p[i], p[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    acc[i] = (r[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.array(acc, np.int64)
        out[y] = prev = cur
    return out.reshape(height, width, bpp).astype(np.uint8)
