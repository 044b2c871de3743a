"""apex-stream: real-time ML scoring of on-chain arbitrage opportunities on Kafka."""
