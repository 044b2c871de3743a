"""Kafka topics to websocket clients and the live dashboard: protocol, hub (fan-out), relay
(Kafka), server (websockets + HTTP)."""
