"""The library's front: analyse a capture file, follow a stream, list its segments.

This is what the notebooks and ``invoke inspect`` call::

    capture = analyze("captures/hello.pcapng")
    conn = capture.connections[0]
    conn.handshake.syn, conn.client.isn, capture.flags_of(frame)
    stream_segments(path, 0)  # every analysed segment of connection 0
    follow(path, 0)           # (client->server bytes, server->client bytes)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import select
import stat
from pathlib import Path
from typing import BinaryIO, Iterator, TypeVar

from lab.inspect.fast.bulk import consume as consume_in_bulk
from lab.inspect.fast.bulk import segments as bulk_segments
from lab.inspect.reader import CaptureFileError, read_batches, read_records
from lab.inspect.tcp import FLAG_NAMES, Connection, Segment, TooLarge, Tracker, analysis_flag_names

T = TypeVar("T")

SHORT_CONNECTION = 60
"""Connections with at most this many frames keep their segments by default
(ladders are drawn of them); longer ones are only counted."""


@dataclasses.dataclass
class Capture:
    """A whole capture, analysed."""

    path: str
    frames: int
    connections: list[Connection]
    flagged: dict[int, int]
    first_time_ns: int
    error: CaptureFileError | None = None

    def flags_of(self, frame: int) -> list[str]:
        """Names of the analysis flags of a frame (1-based, as in Wireshark)."""
        return analysis_flag_names(self.flagged.get(frame, 0))

    def frames_with(self, name: str) -> list[int]:
        """Frames carrying the analysis flag ``name`` (a key of FLAG_NAMES)."""
        mask = FLAG_NAMES[name]
        return sorted(frame for frame, bits in self.flagged.items() if bits & mask)

    def segments(self, stream: int) -> list[Segment]:
        """The remembered segments of a connection (see analyze's ``keep``)."""
        segments = self.connections[stream].segments
        if segments is None:
            raise ValueError(f"stream {stream} has too many frames to keep; analyze(..., keep=True) keeps all")
        return segments


PIPE_WAIT_S = 2.0


def open_capture(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a capture file, with a one-line error for the usual mistakes.

    Only a regular file or a pipe that has data is read: a FIFO nobody writes to
    would block forever, and a device (``/dev/zero``) never ends.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CaptureFileError(f"no such file: {path}") from None
    except OSError as exc:
        raise CaptureFileError(f"cannot open {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise CaptureFileError(f"{path} is a folder, not a capture file")
    if stat.S_ISFIFO(mode):
        return _open_pipe(path)
    if not stat.S_ISREG(mode):
        raise CaptureFileError(f"{path} is not a regular file (a device or a socket): give a capture file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise CaptureFileError(f"cannot open {path}: {exc.strerror}") from None


def _open_pipe(path: Path) -> BinaryIO:
    """A named pipe, once something has been written to it (at most PIPE_WAIT_S)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not any(events & select.POLLIN for _, events in poller.poll(PIPE_WAIT_S * 1000)):
        os.close(fd)
        raise CaptureFileError(f"{path} is a pipe and nothing was written to it in {PIPE_WAIT_S:g} s: "
                               "start the program that writes the capture first")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def analyze(path: str | os.PathLike[str], keep: bool | int = SHORT_CONNECTION, bulk: bool = True,
            max_frames: int | None = None, max_connections: int | None = None) -> Capture:
    """Read and analyse a capture; a damaged file keeps what was read before the damage.

    ``bulk=False`` takes every frame through tcp.py's rules one by one, the
    reference the bulk analysis (lab.inspect.fast.bulk, several times faster) is
    tested against; both give the same Capture. ``max_frames`` and ``max_connections``
    bound what a capture from a stranger may cost: past either, a TooLarge error.
    """
    tracker = Tracker(keep=keep, emit=False, max_connections=max_connections)
    error = None
    with open_capture(path) as stream, _cycles_not_collected():
        try:
            if bulk:
                consume_in_bulk(tracker, _bounded(read_batches(stream), max_frames))
            else:
                tracker.consume(_bounded(read_records(stream), max_frames, one_each=True))
        except CaptureFileError as exc:
            if tracker.frames == 0:
                raise
            error = exc
    return Capture(str(path), tracker.frames, tracker.connections, tracker.flagged,
                   tracker.first_time_ns or 0, error)


@contextlib.contextmanager
def _cycles_not_collected() -> Iterator[None]:
    """The analysis makes objects by the hundred thousand and no reference cycles, yet Python's
    cycle collector walks every object made so far, again and again as they accumulate: a fifth
    of the time of a capture of short connections. It is paused while a capture is analysed."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _bounded(items: Iterator[T], max_frames: int | None, one_each: bool = False) -> Iterator[T]:
    """Batches (or records) until ``max_frames`` frames have been read; then a TooLarge error."""
    if max_frames is None:
        yield from items
        return
    frames = 0
    for item in items:
        frames += 1 if one_each else len(item)  # type: ignore[arg-type]   # a Batch has a length
        if frames > max_frames:
            raise TooLarge(f"more than {max_frames:,} frames")
        yield item


def iter_segments(path: str | os.PathLike[str], bulk: bool = True) -> Iterator[Segment]:
    """Every TCP segment of a capture, analysed, in frame order (memory: a batch of frames and
    each connection's state). ``bulk=False``: frame by frame through tcp.py's rules, the
    reference the bulk way (lab.inspect.fast.bulk.segments) is tested against."""
    with open_capture(path) as stream:
        if bulk:
            yield from bulk_segments(Tracker(keep=True, emit=False), read_batches(stream))
            return
        for segment in Tracker(keep=False, emit=True).feed(read_records(stream)):
            if segment is not None:
                yield segment


def stream_segments(path: str | os.PathLike[str], stream: int) -> list[Segment]:
    """The analysed segments of one connection (the notebooks' unit of study)."""
    return [segment for segment in iter_segments(path) if segment.stream == stream]


def follow(path: str | os.PathLike[str], stream: int) -> tuple[bytes, bytes]:
    """Wireshark's Follow TCP Stream: each direction's payload in sequence order.

    Bytes sent twice (retransmissions, overlaps) are counted once; a hole (a
    segment that was not captured) ends that direction's stream at the hole.
    """
    pieces: dict[bool, dict[int, bytes]] = {True: {}, False: {}}
    for segment in iter_segments(path):
        if segment.stream == stream and segment.length:
            known = pieces[segment.from_client].get(segment.rel_seq, b"")
            if len(segment.payload) > len(known):
                pieces[segment.from_client][segment.rel_seq] = segment.payload
    return _reassemble(pieces[True]), _reassemble(pieces[False])


def _reassemble(pieces: dict[int, bytes]) -> bytes:
    out = bytearray()
    end = None
    for seq in sorted(pieces):
        data = pieces[seq]
        if end is None:
            end = seq
        if seq > end:
            break
        if seq + len(data) > end:
            out += data[end - seq:]
            end = seq + len(data)
    return bytes(out)
