"""A real ``redis-server`` on a free loopback port, for the tests that share a limit.

Real, because what is tested is ``limits``' own Redis scripts and clients
(sync and async) against a server, and what happens when that server goes
away in the middle of a test. ``.ci/run`` installs ``redis-server`` with
apt-get; without it these tests are skipped, saying why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

__all__ = ["RedisServer", "redis_server"]

#: How long a server may take to answer PING after it is started.
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` it at will mid-test.

    It keeps no data on disk, so a restart comes back empty — as a real
    outage might.
    """

    def __init__(self, executable: str, *, password: str | None = None, arguments: tuple[str, ...] = ()) -> None:
        self.executable = executable
        self.arguments = arguments  # more of redis-server's own flags
        self.port = _free_port()
        self.password = password
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        if self.password:
            command += ["--requirepass", self.password]
        command += self.arguments
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pong():
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT}s")
            time.sleep(0.01)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                # A server with a password answers "-NOAUTH": it is up all the same.
                return connection.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server and wait for it: from now on every connection is refused."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout:
                self.process.stdout.close()
            self.process = None


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    """A started :class:`RedisServer` that requires the password ``right``."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    server = RedisServer(executable, password="right")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started :class:`RedisServer` (``.url``, ``.stop()``, ``.start()``), killed after the test."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    server = RedisServer(executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()
