"""A real PostgreSQL server on a free loopback port, in a temporary directory.

Real, because what is tested is psycopg's COPY and pools against a server,
and what happens when that server stops in the middle of a test. The server
is made with ``initdb`` and run with ``pg_ctl`` (found on ``PATH`` or, as
Debian installs them, in ``/usr/lib/postgresql/*/bin``); ``.ci/run`` installs
Debian's ``postgresql`` with apt-get. Without it these tests are skipped,
saying why. PostgreSQL refuses to run as root: under root the server runs as
the ``postgres`` user (or ``nobody``), its directory given to that user.

One server serves the whole test session (``initdb`` takes seconds); each
test gets a table of its own (:func:`pg_table`). Passwords are checked
(scram-sha-256), so the tests see the password kept out of messages.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from itertools import count

import pytest

__all__ = ["PostgresServer", "pg_table", "postgres_server"]

#: How long the server may take to start or stop.
TIMEOUT = 60.0
USER = "ingest"
PASSWORD = "pg-s3cret-pw"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_binaries() -> str | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or ``None``."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def _run_as() -> str | None:
    """The user to run the server as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


class PostgresServer:
    """One PostgreSQL server; :meth:`stop` and :meth:`start` it at will mid-test (its data stays)."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"
        self.password = PASSWORD
        self.root = tempfile.mkdtemp(prefix="ingest-mw-pg-")
        self.data = os.path.join(self.root, "data")
        self.user = _run_as()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as file:
            file.write(PASSWORD)
        self._tool("initdb", "-D", self.data, "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8")
        os.remove(pwfile)

    def _tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [os.path.join(self.bindir, name), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{name} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._tool("pg_ctl", "start", "-w", "-t", str(int(TIMEOUT)), "-D", self.data, "-l", "log", "-o", options)
        deadline = time.monotonic() + TIMEOUT
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not listen")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients cut off at once; ``immediate``: as a crash)."""
        self._tool("pg_ctl", "stop", "-w", "-m", mode, "-D", self.data, check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer` (``.url``, ``.stop()``, ``.start()``), for the session."""
    bindir = find_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed (bash .ci/run installs it)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (extra 'postgres')")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


_tables = count(1)


@pytest.fixture
def pg_table(postgres_server: PostgresServer) -> Iterator[str]:
    """A table name of this test's own in the session's server, dropped after it."""
    name = f"events_{os.getpid()}_{next(_tables)}"
    yield name
    import psycopg

    try:
        with psycopg.connect(postgres_server.url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {name}")
    except psycopg.OperationalError:
        pass  # a test that left the server stopped; the session's server is removed anyway
