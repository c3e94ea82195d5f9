"""Start ``ingest-mw serve`` as a real subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def guarded_uvicorn(app: str, app_dir: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """uvicorn serving ``app`` (``module:attribute`` in ``app_dir``) with serve's
    protocol on ``port``, as a host would run it; returned once it listens
    (its stderr piped, read when it is stopped)."""
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", str(port)]
    command += ["--http", "ingest_mw.serve.protocol:GuardedHttpToolsProtocol", "--log-level", "warning"]
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"uvicorn did not start: {process.communicate(timeout=15)[1]}") from None
            time.sleep(0.05)


def serve_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "ingest_mw", "serve", *args]


class Server:
    """One ``ingest-mw serve`` process; its stderr is collected line by line
    (so that a chatty server never blocks on a full pipe)."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        *,
        log_level: str = "warning",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = serve_command(["--port", str(self.port), "--log-level", log_level, *args])
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._wait_until_listening()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line with {text!r} in:\n{self.stderr}")

    def _wait_until_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(5)
                raise RuntimeError(f"serve exited: {self.stderr}")
            try:
                # The port is bound before the workers start: wait for an answer.
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("serve did not start listening")

    def stop(self, timeout: float = 15.0) -> tuple[int, str]:
        """SIGTERM, as a service manager would; returns (exit code, stderr)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        return self.process.returncode, self.stderr
