"""The lab's request/response protocol, as a codec that never touches a socket.

This module is the lab's "h11": it turns bytes into events and events into bytes,
and leaves all I/O to its caller (the server, the client, the notebooks decoding a
reassembled stream). That is the sans-I/O pattern: every rule of the protocol lives
here and can be tested by shoving bytes in and looking at what comes out.

The protocol, as a person types it into ``nc``::

    request  = VERB [SP argument] LF        (CR LF is accepted too)
    reply    = ("OK" | "ERR") SP text LF

    ECHO <text>    ->  OK <text>
    UPPER <text>   ->  OK <TEXT>
    TIME           ->  OK <UTC time, ISO 8601>
    BULK <nbytes> [note]  ->  OK <nbytes> bytes follow LF, exactly nbytes of PATTERN, OK end of bulk LF
    CC <algorithm> ->  OK <algorithm>: the server sends on this connection with that congestion
                       control (setsockopt TCP_CONGESTION; ERR where its kernel refuses it)
    QUIT           ->  OK bye, then the server closes the connection

Rules, and why:

1. Lines are UTF-8 text ending in LF, so a human with ``nc`` can speak it and a
   learner can read it in a hexdump. Verbs are case-insensitive for the same reason.
2. A line may be at most ``max_line`` bytes (64 KiB by default), newline included.
   The decoder enforces this as bytes arrive: it never holds more than ``max_line``
   bytes of an unfinished line, whatever the peer sends, so a peer that streams
   10 MB without a newline costs 64 KiB, not 10 MB. An over-long line is answered
   with ERR and then the connection is closed, because the decoder cannot know
   where the next request starts.
3. Every other bad line (empty, not UTF-8, unknown verb, bad argument) is answered
   with ERR and the connection goes on: one mistake typed into ``nc`` should not
   cost the learner the connection.
4. BULK is the one reply that is not a line: after the header line come exactly
   ``nbytes`` bytes of a deterministic pattern (lines of printable ASCII, so ``nc``
   shows them and a receiver can check every byte), then a terminator line. The
   client knows how many raw bytes to expect from the header of the reply
   (``OK <nbytes> bytes follow``), checked against the BULK it sent; that is why
   the client side is a small state machine. Anything after the byte count is a
   note the server ignores: a student's request says whose it is that way
   (``BULK 2680798 [tcplab:371ade54]``), as their ECHO lines do in their text.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from typing import Union

# The lab's port. No Wireshark dissector claims 7070 (`tshark -G decodes`), so a
# capture reads as TCP and data even without the lab's dissector; 7000, the first
# choice, is Gryphon's, and Wireshark called a BULK download malformed Gryphon.
PORT = 7070
DEFAULT_MAX_LINE = 64 * 1024
DEFAULT_BULK_CAP = 1 << 30
VERBS = ("ECHO", "UPPER", "TIME", "BULK", "CC", "QUIT")
BULK_TERMINATOR = "end of bulk"
_ALGORITHM = re.compile(r"[a-z0-9_]{1,15}")     # TCP_CA_NAME_MAX is 16, its NUL included
BULK_VIEW_MAX = 256 * 1024

# 63 printable characters and a newline: BULK data is this block repeated.
PATTERN_BLOCK = b"".join(
    bytes([33 + (i % 94)]) for i in range(63)
) + b"\n"


class ProtocolError(Exception):
    """Root of every error this module raises."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol cannot carry (our bug, not the peer's)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes the protocol does not allow."""


# ---------------------------------------------------------------------------
# Events: what the decoders produce and the encoders take. Frozen, so that an
# event can be compared, logged and put in a set without surprises.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Echo:
    text: str


@dataclasses.dataclass(frozen=True)
class Upper:
    text: str


@dataclasses.dataclass(frozen=True)
class Time:
    pass


@dataclasses.dataclass(frozen=True)
class Bulk:
    nbytes: int
    note: str = ""


@dataclasses.dataclass(frozen=True)
class CongestionControl:
    """CC <algorithm>: two flows of one server may then compete with two algorithms."""

    name: str


@dataclasses.dataclass(frozen=True)
class Quit:
    pass


Request = Union[Echo, Upper, Time, Bulk, CongestionControl, Quit]


@dataclasses.dataclass(frozen=True)
class BadRequest:
    """A line the server must answer with ``ERR reason``; ``fatal`` means close after."""

    reason: str
    fatal: bool = False


@dataclasses.dataclass(frozen=True)
class Ok:
    text: str


@dataclasses.dataclass(frozen=True)
class Err:
    reason: str


Reply = Union[Ok, Err]


@dataclasses.dataclass(frozen=True)
class BulkData:
    """A piece of a BULK reply's raw bytes, as it arrived (any size)."""

    data: bytes


@dataclasses.dataclass(frozen=True)
class BulkEnd:
    """The terminator line after a BULK reply's data."""

    text: str


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
"""next_event() has nothing to give until more bytes arrive."""

CLOSED = _Sentinel("CLOSED")
"""The stream is over: nothing more will be decoded from it."""


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def _single_line(text: str, what: str) -> str:
    if "\n" in text:
        raise LocalProtocolError(f"{what} must be one line, got {text!r}")
    return text


def encode_request(request: Request) -> bytes:
    """The bytes that put ``request`` on the wire."""
    if isinstance(request, Echo):
        line = "ECHO " + _single_line(request.text, "ECHO text")
    elif isinstance(request, Upper):
        line = "UPPER " + _single_line(request.text, "UPPER text")
    elif isinstance(request, Time):
        line = "TIME"
    elif isinstance(request, Bulk):
        if request.nbytes < 0:
            raise LocalProtocolError(f"BULK needs a byte count >= 0, got {request.nbytes}")
        line = f"BULK {request.nbytes}" + (" " + _single_line(request.note, "BULK note") if request.note else "")
    elif isinstance(request, CongestionControl):
        if not _ALGORITHM.fullmatch(request.name):
            raise LocalProtocolError(f"CC takes an algorithm's name (letters, digits, _), got {request.name!r}")
        line = "CC " + request.name
    elif isinstance(request, Quit):
        line = "QUIT"
    else:
        raise LocalProtocolError(f"not a request: {request!r}")
    return line.encode() + b"\n"


def encode_reply(reply: Reply | BulkEnd) -> bytes:
    """The bytes of one reply line (for BULK data use :func:`bulk_pattern`)."""
    if isinstance(reply, Ok):
        return b"OK " + _single_line(reply.text, "reply text").encode() + b"\n"
    if isinstance(reply, Err):
        return b"ERR " + _single_line(reply.reason, "error reason").encode() + b"\n"
    if isinstance(reply, BulkEnd):
        return b"OK " + _single_line(reply.text, "terminator").encode() + b"\n"
    raise LocalProtocolError(f"not a reply: {reply!r}")


def bulk_header(nbytes: int) -> Ok:
    """The reply line that announces ``nbytes`` of BULK data."""
    return Ok(f"{nbytes} bytes follow")


def bulk_pattern(offset: int, size: int) -> bytes:
    """Bytes ``offset .. offset+size`` of the endless BULK pattern."""
    block = len(PATTERN_BLOCK)
    start = offset % block
    repeats = (start + size) // block + 1
    return (PATTERN_BLOCK * repeats)[start:start + size]


_BULK_SOURCE = memoryview(PATTERN_BLOCK * (BULK_VIEW_MAX // len(PATTERN_BLOCK) + 2))


def bulk_view(offset: int, size: int) -> memoryview:
    """Bytes ``offset .. offset+size`` of the pattern (size up to BULK_VIEW_MAX), as a view of one
    buffer shared by every caller: sending BULK data allocates nothing per connection."""
    if size > BULK_VIEW_MAX:
        raise LocalProtocolError(f"bulk_view gives at most {BULK_VIEW_MAX} bytes at once, asked {size}")
    start = offset % len(PATTERN_BLOCK)
    return _BULK_SOURCE[start:start + size]


def parse_request_line(line: bytes, bulk_cap: int = DEFAULT_BULK_CAP) -> Request | BadRequest:
    """Turn one line (without its LF) into a request, or the reason it is not one."""
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadRequest(f"request is not valid UTF-8 (byte {exc.start})")
    if not text.strip():
        return BadRequest("empty request (try: ECHO hello)")
    verb, _, argument = text.partition(" ")
    verb = verb.upper()
    if verb in ("ECHO", "UPPER"):
        if not argument:
            return BadRequest(f"usage: {verb} <text>")
        return Echo(argument) if verb == "ECHO" else Upper(argument)
    if verb in ("TIME", "QUIT"):
        if argument.strip():
            return BadRequest(f"usage: {verb} (no argument)")
        return Time() if verb == "TIME" else Quit()
    if verb == "CC":
        name = argument.strip()
        if not _ALGORITHM.fullmatch(name):
            return BadRequest("usage: CC <algorithm>, e.g. CC reno")
        return CongestionControl(name)
    if verb == "BULK":
        count, _, note = argument.strip().partition(" ")
        if not count.isascii() or not count.isdigit():
            return BadRequest("usage: BULK <nbytes> [note], a whole number of bytes")
        nbytes = int(count)
        if nbytes > bulk_cap:
            return BadRequest(f"BULK is limited to {bulk_cap} bytes on this server")
        return Bulk(nbytes, note.strip())
    shown = verb if len(verb) <= 20 else verb[:20] + "..."
    return BadRequest(f"unknown verb {shown!r} (verbs: {', '.join(VERBS)})")


def parse_reply_line(line: bytes) -> Reply:
    """Turn one reply line (without its LF) into Ok or Err."""
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"reply is not valid UTF-8 (byte {exc.start})") from None
    status, _, rest = text.partition(" ")
    if status == "OK":
        return Ok(rest)
    if status == "ERR":
        return Err(rest)
    raise RemoteProtocolError(f"reply does not start with OK or ERR: {text[:60]!r}")


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


class LineSplitter:
    """Cuts a byte stream into LF-terminated lines, holding at most ``max_line`` bytes.

    Operations: ``feed(data)`` returns the complete lines in ``data`` (plus what was
    held from before) and keeps the unfinished tail. Goal: each byte is looked at a
    constant number of times, and an unfinished line never grows past the limit; a
    line that would is reported once with :class:`LineTooLong` and the splitter stops.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 2:
            raise LocalProtocolError(f"max_line must be at least 2 bytes, got {max_line}")
        self.max_line = max_line
        self._tail = bytearray()
        self.overflowed = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held right now (never more than max_line)."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        """Lines completed by ``data``, without their LF; raises LineTooLong once."""
        if self.overflowed:
            return []
        lines: list[bytes] = []
        view = memoryview(data)
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            if len(self._tail) + newline - start + 1 > self.max_line:
                self._overflow(lines)
            if self._tail:
                self._tail += view[start:newline]
                lines.append(bytes(self._tail))
                self._tail.clear()
            else:
                lines.append(data[start:newline])
            start = newline + 1
        if len(self._tail) + len(data) - start >= self.max_line:
            # The line is not finished yet and already fills the limit: with its
            # LF still to come it can only end too long.
            self._overflow(lines)
        self._tail += view[start:]
        return lines

    def _overflow(self, lines: list[bytes]) -> None:
        self.overflowed = True
        self._tail.clear()
        raise LineTooLong(lines, self.max_line)


class LineTooLong(RemoteProtocolError):
    """Raised by LineSplitter.feed: the peer sent a line over the limit; carries the good lines before it."""

    def __init__(self, lines: list[bytes], max_line: int) -> None:
        super().__init__(f"line longer than {max_line} bytes")
        self.lines = lines
        self.max_line = max_line


class RequestDecoder:
    """The server's side: bytes in, requests (or reasons to say ERR) out.

    Usage::

        decoder = RequestDecoder()
        decoder.receive_data(chunk)        # b"" means the peer closed
        while (event := decoder.next_event()) not in (NEED_DATA, CLOSED):
            ...                            # a Request or a BadRequest
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, bulk_cap: int = DEFAULT_BULK_CAP) -> None:
        self._lines = LineSplitter(max_line)
        self._events: deque[Request | BadRequest] = deque()
        self._closed = False
        self.bulk_cap = bulk_cap

    @property
    def buffered(self) -> int:
        """Bytes held of an unfinished line."""
        return self._lines.buffered

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes of the stream; ``b""`` marks its end."""
        if self._closed:
            return
        if not data:
            self._closed = True
            return
        try:
            lines = self._lines.feed(data)
        except LineTooLong as too_long:
            lines = too_long.lines
            self._closed = True
            self._events.extend(parse_request_line(line, self.bulk_cap) for line in lines)
            self._events.append(BadRequest(f"line longer than {too_long.max_line} bytes", fatal=True))
            return
        self._events.extend(parse_request_line(line, self.bulk_cap) for line in lines)

    def next_event(self) -> Request | BadRequest | _Sentinel:
        """The next decoded event, NEED_DATA, or CLOSED once the stream has ended."""
        if self._events:
            return self._events.popleft()
        return CLOSED if self._closed else NEED_DATA


class ReplyDecoder:
    """The client's side: bytes in, replies out, knowing which replies carry BULK data.

    The client tells the decoder what it sent (``expect(request)``), because only
    the request says whether a reply's header is followed by raw bytes. The number
    of raw bytes comes from the reply's header (``OK <nbytes> bytes follow``), and
    must be the number the request asked for: a server that answers ``BULK 100``
    with ``OK 5 bytes follow`` has broken the protocol, and the decoder says so
    instead of reading the next reply out of the data.

    States (h11's rule: an error state that sticks)::

        REPLY      waiting for a reply line
        BULK_DATA  taking the raw bytes a BULK header announced
        BULK_END   waiting for the line that ends the BULK data
        CLOSED     the server closed between replies
        ERROR      the server broke the protocol: every later call raises again
    """

    REPLY, BULK_DATA, BULK_END, CLOSED, ERROR = "REPLY", "BULK_DATA", "BULK_END", "CLOSED", "ERROR"

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self.state = self.REPLY
        self._pending: deque[Request] = deque()
        self._buffer = bytearray()
        self._events: deque[Reply | BulkData | BulkEnd] = deque()
        self._bulk_left = 0
        self._error: RemoteProtocolError | None = None

    def expect(self, request: Request) -> None:
        """Record that ``request`` was sent, so its reply is decoded the right way."""
        self._pending.append(request)

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes from the server; ``b""`` marks the end of the stream."""
        self._raise_if_broken()
        try:
            if not data:
                if self.state != self.REPLY or self._buffer:
                    raise RemoteProtocolError("connection closed in the middle of a reply")
                self.state = self.CLOSED
                return
            if self.state == self.CLOSED:
                raise RemoteProtocolError("bytes arrived after the end of the stream")
            self._buffer += data
            self._parse()
        except RemoteProtocolError as exc:
            self.state, self._error = self.ERROR, exc
            raise

    def _raise_if_broken(self) -> None:
        if self.state == self.ERROR:
            raise RemoteProtocolError(f"the stream is broken: {self._error}")

    def _parse(self) -> None:
        while self._buffer:
            if self.state == self.BULK_DATA:
                take = min(self._bulk_left, len(self._buffer))
                self._events.append(BulkData(bytes(self._buffer[:take])))
                del self._buffer[:take]
                self._bulk_left -= take
                if not self._bulk_left:
                    self.state = self.BULK_END
                continue
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) >= self.max_line:
                    raise RemoteProtocolError(f"reply line longer than {self.max_line} bytes")
                return
            line = bytes(self._buffer[:newline])
            del self._buffer[:newline + 1]
            self._on_line(line)

    def _on_line(self, line: bytes) -> None:
        reply = parse_reply_line(line)
        if self.state == self.BULK_END:
            self.state = self.REPLY
            self._events.append(BulkEnd(reply.text if isinstance(reply, Ok) else reply.reason))
            return
        request = self._pending.popleft() if self._pending else None
        if isinstance(request, Bulk) and isinstance(reply, Ok):
            self._bulk_left = announced_bytes(reply, request)
            self.state = self.BULK_DATA if self._bulk_left else self.BULK_END
        self._events.append(reply)

    def next_event(self) -> Reply | BulkData | BulkEnd | _Sentinel:
        """The next decoded event, NEED_DATA, or CLOSED once the server has closed."""
        if self._events:
            return self._events.popleft()
        self._raise_if_broken()
        return CLOSED if self.state == self.CLOSED else NEED_DATA


def announced_bytes(header: Ok, request: Bulk) -> int:
    """The byte count in a BULK reply's header, which must be the one the request asked for."""
    count, _, rest = header.text.partition(" ")
    if rest != bulk_header(0).text.partition(" ")[2] or not (count.isascii() and count.isdigit()):
        raise RemoteProtocolError(f"the reply to BULK {request.nbytes} is not 'OK <nbytes> bytes follow': "
                                  f"{header.text[:60]!r}")
    if int(count) != request.nbytes:
        raise RemoteProtocolError(f"the server announced {int(count)} bytes for BULK {request.nbytes}")
    return int(count)
