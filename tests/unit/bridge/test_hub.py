"""The bridge's hub: fan-out, bounded queues, frames, replay hand-over."""

from __future__ import annotations

import json

from apex_stream.bridge.hub import Hub
from apex_stream.bridge.protocol import Filter
from tests.unit.bridge.test_protocol import prediction, predictions_batch


def test_fan_out_encodes_once_and_equal_filters_share_chunks() -> None:
    hub = Hub(client_queue=1000, chunk_bytes=1 << 20)
    a, b, c = hub.connect(), hub.connect(), hub.connect()
    hub.subscribe(a, "predictions", Filter(chain="base"))
    hub.subscribe(b, "predictions", Filter(chain="base"))
    hub.subscribe(c, "predictions", Filter())
    hub.publish(predictions_batch([prediction(0, "base"), prediction(1, "ethereum")]))
    assert len(hub.groups["predictions"]) == 2
    assert a.items[0] is b.items[0]  # one chunk object for both
    assert [e["data"]["opportunity_id"] for e in json.loads(a.frames(1 << 20)[0])] == ["p0"]
    assert [e["data"]["opportunity_id"] for e in json.loads(c.frames(1 << 20)[0])] == ["p0", "p1"]
    assert hub.positions["predictions"] == {0: 1, 1: 2}
    hub.unsubscribe(c, ["predictions"])
    hub.publish(predictions_batch([prediction(2)]))
    assert not c.items and a.delivered == 1


def test_full_queue_drops_the_oldest_messages_but_no_control_message() -> None:
    hub = Hub(client_queue=5, chunk_bytes=1)  # one envelope per chunk
    client = hub.connect()
    hub.subscribe(client, "predictions", Filter())
    client.control(b'{"type":"pong"}')
    hub.publish(predictions_batch([prediction(i) for i in range(8)]))
    assert client.queued == 5 and client.dropped == 3
    frames = [json.loads(f) for f in client.frames(1 << 20)]
    assert frames[0] == {"type": "pong"}
    assert [e["data"]["opportunity_id"] for e in frames[1]] == [f"p{i}" for i in range(3, 8)]
    assert client.delivered == 5 and client.queued == 0


def test_frames_respect_the_size_limit_and_keep_order() -> None:
    hub = Hub(client_queue=10_000, chunk_bytes=1)
    client = hub.connect()
    hub.subscribe(client, "predictions", Filter())
    hub.publish(predictions_batch([prediction(i) for i in range(50)]))
    size = len(client.items[0].payload)
    frames = client.frames(size * 10)
    assert all(len(f) <= size * 10 + 20 for f in frames) and len(frames) >= 5
    ids = [e["data"]["opportunity_id"] for f in frames for e in json.loads(f)]
    assert ids == [f"p{i}" for i in range(50)]


def test_held_channel_waits_for_the_replay_marker() -> None:
    hub = Hub(client_queue=1000, chunk_bytes=1 << 20)
    client = hub.connect()
    hub.subscribe(client, "predictions", Filter(), hold=True)
    hub.publish(predictions_batch([prediction(9)]))
    assert not client.items  # live message held while history is sent
    client.push(hub.chunks([b'{"replayed":1}']), 1)
    hub.release(client, "predictions", b'{"type":"replayed"}')
    frames = [json.loads(f) for f in client.frames(1 << 20)]
    assert frames[0] == [{"replayed": 1}] and frames[1] == {"type": "replayed"}
    assert frames[2][0]["data"]["opportunity_id"] == "p9"


def test_event_framing_sends_each_envelope_alone_and_costs_array_clients_nothing() -> None:
    hub = Hub(client_queue=1000, chunk_bytes=1 << 20)
    arrays = [hub.connect(), hub.connect()]
    singles = [hub.connect("event"), hub.connect("event")]
    for client in arrays + singles:
        hub.subscribe(client, "predictions", Filter())
    hub.publish(predictions_batch([prediction(i) for i in range(3)]))
    # array clients share one chunk as before; event clients share one item per envelope
    assert len(arrays[0].items) == 1 and arrays[0].items[0] is arrays[1].items[0]
    assert len(singles[0].items) == 3
    assert all(a is b for a, b in zip(singles[0].items, singles[1].items, strict=True))
    singles[0].control(b'{"type":"pong"}')
    hub.publish(predictions_batch([prediction(3)]))
    frames = [json.loads(f) for f in singles[0].frames(1 << 20)]
    assert [f["type"] for f in frames] == ["prediction"] * 3 + ["pong", "prediction"]
    assert [f["data"]["opportunity_id"] for f in frames if "data" in f] == ["p0", "p1", "p2", "p3"]
    assert singles[0].delivered == 4 and singles[0].queued == 0
    assert [len(json.loads(f)) for f in arrays[0].frames(1 << 20)] == [4]


def test_an_event_framed_queue_drops_its_oldest_events() -> None:
    hub = Hub(client_queue=3, chunk_bytes=1 << 20)
    client = hub.connect("event")
    hub.subscribe(client, "predictions", Filter())
    hub.publish(predictions_batch([prediction(i) for i in range(5)]))
    assert client.dropped == 2
    frames = [json.loads(f) for f in client.frames(1 << 20)]
    assert [f["data"]["opportunity_id"] for f in frames] == ["p2", "p3", "p4"]


def test_switching_framing_applies_to_what_is_queued_afterwards() -> None:
    hub = Hub(client_queue=1000, chunk_bytes=1 << 20)
    client = hub.connect()
    hub.subscribe(client, "predictions", Filter())
    hub.publish(predictions_batch([prediction(0), prediction(1)]))
    client.framing = "event"
    hub.publish(predictions_batch([prediction(2)]))
    frames = [json.loads(f) for f in client.frames(1 << 20)]
    assert isinstance(frames[0], list) and len(frames[0]) == 2  # queued as a chunk of two
    assert frames[1]["data"]["opportunity_id"] == "p2"
    client.framing = "array"
    hub.publish(predictions_batch([prediction(3), prediction(4)]))
    assert [len(json.loads(f)) for f in client.frames(1 << 20)] == [2]
