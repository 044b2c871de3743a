"""A single-node Apache Kafka broker in KRaft mode, run from Maven Central jars on Java 17.

The jars are fetched once with ``mvn dependency:copy-dependencies`` (resources/kafka-pom.xml) into
``$APEX_HOME/kafka-<version>/libs``; data, config, log and pid live in ``$APEX_HOME/kafka``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from ..errors import ServiceError
from ..resources import KAFKA_POM
from ..settings import Settings
from .probe import port_open, require_binary, wait_until

MAIN_CLASS = "kafka.Kafka"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.check.interval.ms=60000
"""

LOG4J_PROPERTIES = """\
log4j.rootLogger=WARN, stdout
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


class KafkaService:
    """Starts, stops and reports on the local broker; every operation is idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.libs = settings.home / f"kafka-{settings.kafka_version}" / "libs"
        self.dir = settings.home / "kafka"
        self.pid_file = self.dir / "kafka.pid"
        self.log_file = self.dir / "kafka.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    def pid(self) -> int | None:
        """The broker's pid when our broker process is alive."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if MAIN_CLASS.encode() in cmdline else None

    def fetch_jars(self) -> None:
        """Download the broker jars from Maven Central unless already cached."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        mvn = require_binary("mvn", "install Maven (apt-get install maven) to fetch the Kafka jars")
        print(f"fetching Apache Kafka {self.settings.kafka_version} jars from Maven Central ...")
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                f"-Dkafka.version={self.settings.kafka_version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"mvn could not fetch the Kafka jars:\n{result.stdout[-3000:]}")
        marker.touch()

    def _java(self) -> str:
        java = require_binary("java", "install Java 17 (apt-get install openjdk-17-jre-headless)")
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        match = re.search(r'version "(\d+)', out)
        if not match or int(match.group(1)) < 17:
            raise ServiceError(f"Kafka needs Java 17 or newer, found: {out.splitlines()[0]}")
        return java

    def _configure(self, java: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        props = self.dir / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data=data,
            )
        )
        (self.dir / "log4j.properties").write_text(LOG4J_PROPERTIES)
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            result = subprocess.run(
                [
                    java,
                    *self._jvm_args(),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # the tool writes its reasons to either
                text=True,
            )
            if result.returncode != 0:
                raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout[-2000:]}")
        return props

    def _jvm_args(self) -> list[str]:
        return [
            "-cp",
            f"{self.libs}/*",
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
        ]

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker and wait until it answers; False when it was already running."""
        if self.pid() is not None:
            return False
        for port in (self.settings.kafka_port, self.settings.kafka_controller_port):
            if port_open("127.0.0.1", port):
                raise ServiceError(
                    f"port {port} is taken by another process; stop it or set "
                    "APEX_KAFKA_PORT / APEX_KAFKA_CONTROLLER_PORT"
                )
        java = self._java()
        self.fetch_jars()
        props = self._configure(java)
        heap = self.settings.kafka_heap
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [
                    java,
                    f"-Xmx{heap}",
                    f"-Xms{heap}",
                    "-XX:+UseG1GC",
                    *self._jvm_args(),
                    MAIN_CLASS,
                    str(props),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))

        def answers() -> bool:
            if proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise ServiceError(f"Kafka exited with code {proc.returncode}:\n{tail}")
            return port_open("127.0.0.1", self.settings.kafka_port) and broker_answers(self.address)

        try:
            wait_until(answers, timeout, f"Kafka on {self.address}", 0.5)
        except ServiceError as exc:
            tail = self.log_file.read_text(errors="replace")[-3000:]
            raise ServiceError(f"{exc}; the end of {self.log_file}:\n{tail}") from None
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, SIGKILL after ``timeout``); False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: self.pid() is None, 10, f"Kafka pid {pid} to exit")
        self.pid_file.unlink(missing_ok=True)
        return True


def broker_answers(bootstrap: str) -> bool:
    """True when the broker answers a metadata request."""

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    try:
        asyncio.run(probe())
    except Exception:  # noqa: BLE001 - any failure means the broker does not answer
        return False
    return True
