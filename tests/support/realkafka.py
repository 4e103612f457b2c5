"""Target brokers for the client tests: a real Apache Kafka 4.1.1 (KRaft) on a free loopback port.

The ``target_broker`` fixture is parametrised by broker kind: ``kafka`` and ``tidelog`` (Tidelog's
own ``tidelog broker``) by default; ``TIDELOG_TEST_BROKERS=kafka`` narrows it. Kafka's jars come
from ``bench/kafka/fetch.sh`` (cached under ``~/.cache/tidelog-bench``; ``TIDELOG_KAFKA_LIBS``
overrides). A broker that cannot start (no ``java``, no jars) FAILS the
tests with the reason: never a skip.

The broker's log goes to a file; after every failed test its tail is printed on the terminal.
Test modules import the fixtures::

    from realkafka import broker, target_broker  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tidelogbroker import free_port

ROOT = Path(__file__).resolve().parents[2]
FETCH_SH = ROOT / "bench" / "kafka" / "fetch.sh"
KAFKA_VERSION = "4.1.1"
BROKER_KINDS = [k.strip() for k in os.environ.get("TIDELOG_TEST_BROKERS", "kafka,tidelog").split(",") if k.strip()]
START_DEADLINE_S = 90.0
STOP_DEADLINE_S = 20.0
LOG_TAIL_LINES = 150

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


class BrokerStartError(RuntimeError):
    """The target broker could not be started; the message says why (and shows its log)."""


@dataclass(frozen=True)
class RunningBroker:
    """A broker the tests talk to: its kind, ``host:port`` and the file its log goes to."""

    kind: str
    host: str
    port: int
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no broker log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def kafka_libs() -> Path:
    """Directory of Kafka's jars: ``$TIDELOG_KAFKA_LIBS``, else what ``bench/kafka/fetch.sh`` prints."""
    if env := os.environ.get("TIDELOG_KAFKA_LIBS"):
        return Path(env)
    out = subprocess.run(
        ["bash", str(FETCH_SH)],
        capture_output=True,
        text=True,
        env=dict(os.environ, KAFKA_VERSION=KAFKA_VERSION),
        check=False,
    )
    if out.returncode != 0:
        raise BrokerStartError(f"bench/kafka/fetch.sh failed (exit {out.returncode}):\n{out.stderr.strip()}")
    return Path(out.stdout.strip().splitlines()[-1])


def java_cmd(libs: Path, main: str, *args: str, log4j: Path) -> list[str]:
    """``java`` with Kafka's classpath, a 512 MiB heap and our log4j2 configuration."""
    java = shutil.which("java")
    if java is None:
        raise BrokerStartError(
            "`java` is not on PATH: Apache Kafka 4.1.1 needs Java 17+ (apt-get install openjdk-17-jre)"
        )
    return [
        java,
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def _cluster_id() -> str:
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not s.startswith("-"):
            return s


def _properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data_dir}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=1",
            "",
        ]
    )


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    """Poll until ``host:port`` accepts connections; fail early if the process dies."""
    while True:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            raise BrokerStartError(f"the broker exited with code {proc.returncode} before listening; its log:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            raise BrokerStartError(
                f"the broker did not listen on {host}:{port} within {START_DEADLINE_S:.0f}s; its log:\n{tail}"
            )
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_DEADLINE_S)


@contextlib.contextmanager
def run_kafka(workdir: Path) -> Iterator[RunningBroker]:
    """Format a KRaft data directory in ``workdir``, run Kafka 4.1.1 there until the block ends."""
    libs = kafka_libs()
    log4j = workdir / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    port, controller_port = free_port(), free_port()
    props = workdir / "server.properties"
    props.write_text(_properties(workdir / "data", port, controller_port))
    log_path = workdir / "kafka.log"
    fmt = subprocess.run(
        java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props), log4j=log4j),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if fmt.returncode != 0:
        raise BrokerStartError(f"Kafka StorageTool format failed ({fmt.returncode}):\n{fmt.stdout}{fmt.stderr}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            java_cmd(libs, "kafka.Kafka", str(props), log4j=log4j),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_for_port("127.0.0.1", port, proc, time.monotonic() + START_DEADLINE_S, log_path)
        yield RunningBroker("kafka", "127.0.0.1", port, log_path)
    finally:
        _stop(proc)


# The broker reads TIDELOG_* variables as its config: the test harness's own must not reach it.
_TEST_ENV_FREE = {k: v for k, v in os.environ.items() if k not in ("TIDELOG_TEST_BROKERS", "TIDELOG_KAFKA_LIBS")}


@contextlib.contextmanager
def run_tidelog(workdir: Path) -> Iterator[RunningBroker]:
    """Run Tidelog's standalone broker (the ``tidelog`` command beside this interpreter) in ``workdir``."""
    command = Path(sys.executable).parent / "tidelog"
    if not command.exists():
        raise BrokerStartError(f"{command} is missing: install the project (pip install -e .)")
    port = free_port()
    log_path = workdir / "tidelog.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(command), "broker", "--data-dir", str(workdir / "data"), "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_TEST_ENV_FREE,
        )
    try:
        _wait_for_port("127.0.0.1", port, proc, time.monotonic() + START_DEADLINE_S, log_path)
        yield RunningBroker("tidelog", "127.0.0.1", port, log_path)
    finally:
        _stop(proc)


_STARTERS = {"kafka": run_kafka, "tidelog": run_tidelog}


class _Shared:
    """One broker per kind per session, however many test modules import the fixture."""

    def __init__(self) -> None:
        self.running: dict[str, RunningBroker] = {}
        self.errors: dict[str, str] = {}
        self.refs: dict[str, int] = {}
        self.stack: dict[str, contextlib.ExitStack] = {}

    def acquire(self, kind: str) -> RunningBroker:
        if kind in self.errors:
            pytest.fail(self.errors[kind], pytrace=False)
        if kind not in self.running:
            stack = contextlib.ExitStack()
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"tidelog-{kind}-")))
            try:
                self.running[kind] = stack.enter_context(_STARTERS[kind](workdir))
            except BrokerStartError as exc:
                stack.close()
                self.errors[kind] = f"cannot start the {kind} target broker: {exc}"
            if kind in self.errors:
                pytest.fail(self.errors[kind], pytrace=False)
            self.stack[kind] = stack
        self.refs[kind] = self.refs.get(kind, 0) + 1
        return self.running[kind]

    def release(self, kind: str) -> None:
        self.refs[kind] -= 1
        if self.refs[kind] == 0:
            del self.running[kind]
            self.stack.pop(kind).close()


_SHARED = _Shared()


@pytest.fixture(scope="session", params=BROKER_KINDS)
def target_broker(request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    """The broker under test for the whole session (started once per kind, stopped at the end)."""
    kind = str(request.param)
    if kind not in _STARTERS:
        pytest.fail(f"unknown target broker kind {kind!r} (known: {', '.join(_STARTERS)})", pytrace=False)
    running = _SHARED.acquire(kind)
    try:
        yield running
    finally:
        _SHARED.release(kind)


@pytest.fixture
def broker(target_broker: RunningBroker, request: pytest.FixtureRequest) -> Iterator[RunningBroker]:
    """``target_broker`` for one test; prints the broker's log tail on the terminal if the test failed."""
    failed_before = request.session.testsfailed
    yield target_broker
    if request.session.testsfailed > failed_before:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        text = f"{target_broker.kind} broker log (last {LOG_TAIL_LINES} lines of {target_broker.log_path}):\n"
        text += target_broker.log_tail()
        if reporter is not None:
            reporter.write_sep("-", f"{target_broker.kind} broker log for {request.node.nodeid}")
            reporter.write_line(text)
        else:
            print(text)


def run_java_tool(main: str, *args: str, stdin: str = "", timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a Kafka tools class (a real Java client, e.g. ``org.apache.kafka.tools.ConsoleProducer``)
    against any broker; fails the test with a clear message if Java or the jars are missing."""
    try:
        libs = kafka_libs()
        with tempfile.TemporaryDirectory(prefix="tidelog-javatool-") as tmp:
            log4j = Path(tmp) / "log4j2.properties"
            log4j.write_text(_LOG4J2.replace("rootLogger.level = info", "rootLogger.level = warn"))
            return subprocess.run(
                java_cmd(libs, main, *args, log4j=log4j),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
    except BrokerStartError as exc:
        pytest.fail(f"cannot run the Java client {main}: {exc}", pytrace=False)
