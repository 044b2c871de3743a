"""The worker's HTTP API (FastAPI): see :mod:`apex_stream.api.app`."""
