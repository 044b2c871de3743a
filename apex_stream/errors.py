"""The one exception tree of apex-stream: every error names what went wrong and how to fix it."""


class ApexStreamError(Exception):
    """Root of every error apex-stream raises on purpose."""


class InvalidEvent(ApexStreamError):
    """A message that does not decode into a valid event; ``reason`` is readable by a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceError(ApexStreamError):
    """A local service (Kafka, PostgreSQL) is missing, failed to start or does not answer."""


class TopicError(ApexStreamError):
    """A topic definition is invalid or the broker disagrees with it."""


class ModelError(ApexStreamError):
    """A model file or manifest entry that cannot be used (raised by the registry and by model
    validation, which the registry runs: it lives here so that neither imports the other)."""
