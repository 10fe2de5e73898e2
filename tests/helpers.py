"""Shared test helpers: a real lab server in a child process, and small socket tools."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python -m lab.server`` on a free loopback port, read from its log line."""

    def __init__(self, *args: str, max_open_files: int | None = None) -> None:
        def limit_open_files() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab.server", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
            preexec_fn=limit_open_files if max_open_files else None,
        )
        self.log_lines: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log_lines.append(line)
            match = re.search(r"listening on .* port (\d+)", line)
            if match:
                self.port = int(match.group(1))
                return
        self.proc.kill()
        raise RuntimeError(f"server did not start: {''.join(self.log_lines)}")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.terminate()

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM, then the exit code; the rest of the log goes to log_lines."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.log_lines.extend(self.proc.stderr.readlines())
        return code


def ok(result: subprocess.CompletedProcess) -> str:
    """The stdout of an `invoke ...` that must succeed, and say nothing of a traceback."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def recv_until(sock: socket.socket, marker: bytes, limit: int = 1 << 26) -> bytes:
    """Read until ``marker`` has arrived (or EOF); return everything read."""
    data = bytearray()
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send payload, close our side, return all the server sent back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return recv_until(sock, b"\x00never\x00")


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``invoke ARGS`` in the project, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, input=stdin,
    )


def docker_json(*args: str) -> list:
    """``docker ARGS`` that print JSON, parsed ([] when the objects do not exist)."""
    import json
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout or "[]")


def labelled(kind: str, lab: str, role: str | None = None) -> list[str]:
    """IDs of the containers/networks/images labelled for ``lab`` (and ``role``, if given)."""
    listing = {"container": ["ps", "-a", "-q"], "network": ["network", "ls", "-q"],
               "image": ["image", "ls", "-q"]}[kind]
    roles = ["--filter", f"label=org.tcplab.role={role}"] if role else []
    result = subprocess.run(["docker", *listing, "--filter", f"label=org.tcplab.lab={lab}", *roles],
                            capture_output=True, text=True, timeout=60)
    return result.stdout.split()


TEST_LAB_PREFIX = "nlt-"
"""Every lab a test brings up is named nlt-*; its image is tagged <repo>:nlt-*."""


def remove_test_images() -> None:
    """Remove the images the tests built for their labs (and only those)."""
    from lab.host.settings import DEFAULTS

    listing = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", DEFAULTS["image"]],
                             capture_output=True, text=True, timeout=60)
    tags = [tag for tag in listing.stdout.split() if tag.split(":", 1)[1].startswith(TEST_LAB_PREFIX)]
    if tags:
        subprocess.run(["docker", "rmi", *tags], capture_output=True, timeout=300)


class BackgroundCapture:
    """`invoke capture ARGS --lab LAB` running in the background, its output read as it comes."""

    def __init__(self, lab: str, *args: str) -> None:
        import threading

        self.proc = subprocess.Popen([sys.executable, "-m", "invoke", "capture", *args, "--lab", lab], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code, "".join(self.lines)


def mock_docker(responses: dict):
    """An invoke MockContext answering docker commands by regex (first match wins), for the lab's
    host code to run against without an engine; ``c.run.call_args_list`` is what it asked."""
    from invoke import Config, MockContext

    config = Config(overrides={"run": {"echo_format": "{command}"}})
    return MockContext(config=config, run={re.compile(k): v for k, v in responses.items()}, repeat=True)
