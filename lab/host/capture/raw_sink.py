"""The capture engine's stream into the raw file, every write checked.

The engine writes pcap to its standard output. The docker client used to write it
straight into the file, and a full disk then cut the capture without a word: on a
full 1 MB filesystem a 20 MB capture kept 925 of some 14,000 packets, and the message
blamed the annotation. So the stream comes through here, each chunk written with
os.write; the first write that fails (ENOSPC, EDQUOT, EIO) ends the keeping: the rest
is read and dropped, so the engine is never blocked, ``on_failure`` is called once
(the recorder stops the engine), and ``error`` says what happened.
"""

from __future__ import annotations

import os
import threading
from typing import IO, Callable

CHUNK = 1 << 20


class RawSink(threading.Thread):
    """Copies ``stream`` into the file open as ``fd`` (which it closes) until the stream ends."""

    def __init__(self, stream: IO[bytes], fd: int, on_failure: Callable[[], None]) -> None:
        super().__init__(name="raw-sink", daemon=True)
        self.stream, self.fd, self.on_failure = stream, fd, on_failure
        self.written = 0
        self.error: OSError | None = None

    def run(self) -> None:
        source = self.stream.fileno()
        try:
            while chunk := os.read(source, CHUNK):
                if self.error is None:
                    self._write(memoryview(chunk))
        finally:
            os.close(self.fd)

    def _write(self, data: memoryview) -> None:
        try:
            while data:
                done = os.write(self.fd, data)
                data = data[done:]
                self.written += done
        except OSError as exc:
            self.error = exc
            self.on_failure()
