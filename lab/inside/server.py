"""The lab's server: the protocol of lab.protocol over TCP and, on the same port, UDP.

Read it next to a capture: a connection is accepted (the handshake already happened
in the kernel), lines are received and answered, and the connection is closed by the
client (its FIN arrives as end-of-file), by QUIT (right after the reply we shut our
side, which sends our FIN), or by one of the limits below.

Why asyncio rather than selectors: a coroutine per connection reads top to bottom
like the lesson (receive, answer, repeat), while a selectors loop would hide it
inside a hand-written state machine per socket. asyncio also gives us timeouts and
shutdown as cancellation, and keeps thousands of idle connections cheap (no thread
each).

Why the loop's socket calls (``sock_accept``, ``sock_recv``, and ``send`` with a
wait for room in the send buffer) rather than asyncio's streams: they are the socket API a networking course teaches,
so each line names what it does to the connection (``shutdown(SHUT_WR)`` sends our
FIN, ``close()`` releases the socket); and streams put a transport, a protocol, a
reader and a writer around every connection, which cost a third more CPU per
connection (measured from the server's CPU time under bench/server.py's load),
enough to make it slower than the textbook echo server. All protocol rules stay in
lab.inside.protocol; this module only moves bytes.

Limits, each enforced in one place (the sweeper, :meth:`LabServer._sweep`, closes a
connection that waits longer than its bound):

* idle timeout: a connection with no complete request for ``idle_timeout`` seconds
  is closed, so forgotten ``nc`` sessions do not pile up; bytes that do not finish
  a request do not count (a client trickling one byte a second is still idle);
* stall timeout: a reply the client does not take in (it stopped reading, its
  window stays at zero) may make no progress for ``stall_timeout`` seconds, then
  the connection is closed: progress is a byte of the reply leaving for the client
  (SIOCOUTQNSD falls), looked at by the sweeper, so the bound holds from the last
  byte the client made room for, not from when the server last looked. A slow reader is fine, and so is a pause of a few
  seconds (the zero-window lesson makes one); a reader that never reads would
  otherwise hold its slot, and its socket, forever;
* memory: BULK data is sent from one pattern buffer shared by every connection
  (slices of it, never a copy), so a connection costs its socket buffers and a
  few objects, however much it asked for;
* connection cap: at most ``max_connections`` at once, and at most ``max_per_source``
  from one address (lab.inside.slots); a newcomer over either takes the slot of the
  connection that has waited longest for its next request (closed with ``ERR``, logged
  ``close=evicted``), or, when none has waited a second, gets ``ERR busy`` and is
  closed at once, politely, instead of being left waiting;
* line and BULK limits: lab.protocol;
* shutdown (SIGTERM, SIGINT): stop accepting, close idle connections, let replies in
  flight finish, and cancel what still runs after ``shutdown_grace`` seconds, so the
  process exits 0 within 2 s (Docker's ``stop`` waits 10 s, a learner less).

One log line per TCP connection (and per UDP datagram), as ``key=value`` pairs so
it is both readable and greppable::

    2026-11-24T09:14:03.512 conn proto=tcp peer=172.28.0.3:41234 bytes_in=12 bytes_out=9 duration_ms=1.8 close=client

These access-log lines are written straight to stderr (:class:`AccessLog`); a storm
of resets or refusals from one address is summarised, one line a second
(``conns ... close=reset count=N over_ms=1000``), so the log keeps its history. The
server's own messages (listening, shutting down) go through ``logging`` in the
same format, as a web server keeps an access log beside its error log.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import errno
import fcntl
import logging
import math
import os
import signal
import socket
import struct
import sys
import time
from typing import IO, Any, Callable, cast

from lab.inside import protocol
from lab.inside.protocol import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    Bulk,
    CongestionControl,
    Echo,
    Err,
    Ok,
    Quit,
    Reply,
    Request,
    Time,
    Upper,
)
from lab.inside.slots import Slots

log = logging.getLogger("lab.server")

BULK_CHUNK = protocol.BULK_VIEW_MAX
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # of every log line, then milliseconds
READ_SIZE = 64 * 1024
LINGER_SECONDS = 1.0
MAX_DATAGRAM = 65507     # the most a UDP datagram carries over IPv4 (65535 - 20 - 8)
SIOCOUTQNSD = 0x894B     # linux/sockios.h: bytes in the send queue not yet sent
REPEATED = ("reset", "busy", "evicted")     # closes a storm repeats: summarised in the log
REPEATS_KEPT = 1024      # sources whose repeats are counted apart; the rest are counted together


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything the server can be told on its command line."""

    host: str = "127.0.0.1"
    port: int = protocol.PORT
    max_line: int = protocol.DEFAULT_MAX_LINE
    bulk_cap: int = protocol.DEFAULT_BULK_CAP
    idle_timeout: float = 120.0
    stall_timeout: float = 60.0
    max_connections: int = 512
    max_per_source: int = 0          # connections from one address; 0: half of max_connections
    min_idle_to_yield: float = 1.0   # a connection idle this long gives its slot to a newcomer
    shutdown_grace: float = 1.5

    @property
    def per_source(self) -> int:
        return self.max_per_source or max(1, self.max_connections // 2)


@dataclasses.dataclass
class ConnectionRecord:
    """What the log line of one connection says."""

    proto: str
    peer: tuple[Any, ...]  # the socket address; formatted only when the line is written
    started: float = dataclasses.field(default_factory=time.monotonic)
    bytes_in: int = 0
    bytes_out: int = 0
    close: str = "open"

    def log_line(self) -> str:
        duration_ms = (time.monotonic() - self.started) * 1000
        return (
            f"conn proto={self.proto} peer={format_peer(self.peer)} bytes_in={self.bytes_in} "
            f"bytes_out={self.bytes_out} duration_ms={duration_ms:.1f} close={self.close}"
        )


class AccessLog:
    """Writes the one line per connection to a stream, time first, as it happens.

    Not through ``logging``: measured from the server's CPU time under a stream of
    one-request connections, a ``log.info`` call cost about 15 µs per connection,
    more than the rest of a short connection's bookkeeping together; a direct write
    costs about 1 µs. Each line is flushed so that ``docker logs -f`` shows it at
    once. A log that cannot be written (its reader gone) is dropped: serving
    matters more than logging.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.repeats: dict[tuple[str, str], list[int]] = {}    # (address, close) -> [second, lines not written]

    def write(self, record: ConnectionRecord) -> None:
        now = time.time()
        if record.close in REPEATED and record.proto == "tcp":
            key = (str(record.peer[0]) if len(self.repeats) < REPEATS_KEPT else "*", record.close)
            seen = self.repeats.get(key)
            if seen is not None and seen[0] == int(now):
                seen[1] += 1                    # the second's first line is written; the rest are counted
                return
            self._summarise(key)
            self.repeats[key] = [int(now), 0]
        self._line(now, record.log_line())

    def flush_repeats(self, now: float | None = None) -> None:
        """Write the counts of the seconds that are over (the server's sweeper calls this; at the end,
        ``now=math.inf`` writes them all)."""
        second = time.time() // 1 if now is None else now
        for key in [key for key, (at, _) in self.repeats.items() if at < second]:
            self._summarise(key)

    def _summarise(self, key: tuple[str, str]) -> None:
        seen = self.repeats.pop(key, None)
        if seen and seen[1]:
            address, close = key
            self._line(time.time(), f"conns proto=tcp peer={address} close={close} count={seen[1]} over_ms=1000")

    def _line(self, now: float, text: str) -> None:
        stamp = time.strftime(TIME_FORMAT, time.localtime(now))
        try:
            self.stream.write(f"{stamp}.{int(now * 1000) % 1000:03d} {text}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a broken pipe, or a closed stream
            pass


def reply_to(request: Request) -> Reply:
    """The answer to one request (for BULK, the header line before its data)."""
    if isinstance(request, Echo):
        return Ok(request.text)
    if isinstance(request, Upper):
        return Ok(request.text.upper())
    if isinstance(request, Time):
        now = datetime.datetime.now(datetime.timezone.utc)
        return Ok(now.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    if isinstance(request, Bulk):
        return protocol.bulk_header(request.nbytes)
    if isinstance(request, Quit):
        return Ok("bye")
    if isinstance(request, CongestionControl):
        return Err("CC needs a TCP connection: it sets that connection's congestion control")
    raise TypeError(f"not a request: {request!r}")


def choose_congestion_control(conn: socket.socket, name: str) -> Reply:
    """CC NAME: this connection sends with ``name`` from now on, if the kernel lets an
    unprivileged process pick it (the host's net.ipv4.tcp_allowed_congestion_control)."""
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
    except OSError as exc:
        return Err(f"congestion control {name} is not to be had here ({exc.strerror})")
    return Ok(name)


def format_peer(address: tuple[Any, ...]) -> str:
    """``ip:port``, with IPv6 addresses in brackets as in a URL."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclasses.dataclass(eq=False)
class Conversation:
    """One client's TCP connection, as the server holds it: its socket, its log line, and what
    it waits for now (the next request, or room to send), until when, which the sweeper reads."""

    conn: socket.socket
    record: ConnectionRecord
    source: str                    # the client's address: what its share of the slots is counted by
    task: asyncio.Task[None] | None = None
    idle_since: float | None = dataclasses.field(default_factory=time.monotonic)   # None: being answered
    due: float | None = None       # the wait's bound (monotonic s), or None when not waiting
    waiting_for: str = ""          # "idle-timeout" (the next request) or "stalled" (room to send)
    not_sent: int = 0              # while stalled: the reply's bytes not yet sent when last looked at
    ended_by: str = ""             # why the sweeper (or a newcomer) ended it


class LabServer:
    """Serves TCP connections and UDP datagrams until :meth:`shutdown` is called."""

    def __init__(self, config: ServerConfig, access_log: AccessLog | None = None) -> None:
        self.config = config
        self.access_log = access_log or AccessLog()
        self._listeners: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._conversations: set[Conversation] = set()       # the TCP connections being served
        self._slots: Slots[Conversation] = Slots(config.max_connections, config.per_source,
                                                 config.min_idle_to_yield, lambda talk: talk.idle_since)
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0)."""
        assert self._listeners, "start() first"
        port: int = self._listeners[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen on TCP, then bind UDP on the same port number."""
        cfg = self.config
        self._listeners = listen(cfg.host, cfg.port)
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _DatagramService(cfg, self.access_log), local_addr=(cfg.host, self.port)
        )
        self._acceptors = [loop.create_task(self._accept_forever(listener)) for listener in self._listeners]
        self._sweeper = loop.create_task(self._sweep())
        log.info("listening on tcp and udp %s port %d", cfg.host, self.port)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def shutdown(self) -> None:
        """Stop accepting and let the connections finish (see the module docstring)."""
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down: %d connection(s) open", len(self._connections))
        between_requests = [talk.task for talk in self._conversations if talk.waiting_for == "idle-timeout"]
        for task in (*self._acceptors, self._sweeper, *between_requests):
            if task is not None:
                task.cancel()
        if self._udp is not None:
            self._udp.close()
        asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        if self._connections:
            _, late = await asyncio.wait(self._connections, timeout=self.config.shutdown_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=0.3)
        self.access_log.flush_repeats(math.inf)
        self._stopped.set()

    async def _accept_forever(self, listener: socket.socket) -> None:
        """Accept connections and give each its own task, or turn it away when full."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    conn, address = await loop.sock_accept(listener)
                except ConnectionAbortedError:  # the client gave up before we got to it
                    continue
                except OSError as exc:  # out of file descriptors or memory, for now
                    log.warning("cannot accept: %s; trying again in 1 s", exc.strerror)
                    await asyncio.sleep(1)
                    continue
                source = str(address[0])
                admitted, to_close = self._slots.admit(source, time.monotonic())
                if not admitted:
                    await asyncio.sleep(0)      # connections that were reset give their slots back
                    admitted, to_close = self._slots.admit(source, time.monotonic())
                if not admitted:
                    self._turn_away(conn, address)
                    continue
                if to_close is not None:
                    self._make_room(to_close)
                # Nagle's algorithm would hold a small reply back until the client ACKs
                # the previous one, and the client's delayed ACK makes that up to 40 ms.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                talk = Conversation(conn, ConnectionRecord("tcp", address), source)
                talk.task = loop.create_task(self._on_connection(talk))
                self._slots.add(source, talk)
                self._conversations.add(talk)
                self._connections.add(talk.task)
                talk.task.add_done_callback(self._connections.discard)
                await asyncio.sleep(0)          # a backlog of connects must not starve the connections
        finally:
            listener.close()  # from now on a SYN to our port gets RST: connection refused

    def _turn_away(self, conn: socket.socket, address: tuple[Any, ...]) -> None:
        """Say ``ERR busy`` and close; a few bytes into an empty send buffer never block."""
        record = ConnectionRecord("tcp", address, close="busy")
        message = protocol.encode_reply(Err("busy, try again later"))
        try:
            record.bytes_out = conn.send(message)
        except OSError:
            record.close = "reset"
        conn.close()
        self.access_log.write(record)

    def _make_room(self, talk: Conversation) -> None:
        """End an idle conversation so that a newcomer gets its slot (lab.inside.slots chose it)."""
        self._slots.remove(talk.source, talk)
        talk.ended_by = "evicted"
        if talk.task is not None:
            talk.task.cancel()

    async def _on_connection(self, talk: Conversation) -> None:
        try:
            talk.record.close = await self._converse(talk)
        except asyncio.CancelledError:
            talk.record.close = talk.ended_by or "shutdown"
            if talk.ended_by == "evicted":
                _say_quickly(talk, protocol.encode_reply(Err("closed to make room for another client")))
        except (ConnectionResetError, BrokenPipeError):
            talk.record.close = "reset"
        finally:
            self._slots.remove(talk.source, talk)
            self._conversations.discard(talk)
            talk.conn.close()
            self.access_log.write(talk.record)

    async def _converse(self, talk: Conversation) -> str:
        """The lesson in four steps: read a request, answer it, again, until the client closes
        (or quits, or breaks the protocol); return how the conversation ended."""
        decoder = protocol.RequestDecoder(self.config.max_line, self.config.bulk_cap)
        request_due = time.monotonic() + self.config.idle_timeout   # the next complete request, by then
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                if self._stopping:
                    return "shutdown"
                data = await self._recv(talk, request_due)
                talk.record.bytes_in += len(data)
                decoder.receive_data(data)
                continue
            if event is CLOSED:
                return "client"
            talk.idle_since = None                  # a request is being answered: its slot is not idle
            if isinstance(event, BadRequest):
                await self._send(talk, protocol.encode_reply(Err(event.reason)))
                if event.fatal:
                    await _linger(talk.conn)
                    return "line-too-long"
            else:                                   # NEED_DATA and CLOSED were met above
                await self._answer(talk, cast(Request, event))
                if isinstance(event, Quit):
                    await _linger(talk.conn)
                    return "quit"
            talk.idle_since = time.monotonic()
            request_due = talk.idle_since + self.config.idle_timeout

    async def _answer(self, talk: Conversation, request: Request) -> None:
        """Send the reply to one request (BULK: its header, its data, its end line).

        BULK data goes out in slices of one pattern buffer shared by every
        connection (protocol.bulk_view): no connection allocates its own.
        """
        if isinstance(request, CongestionControl):
            await self._send(talk, protocol.encode_reply(choose_congestion_control(talk.conn, request.name)))
            return
        await self._send(talk, protocol.encode_reply(reply_to(request)))
        if isinstance(request, Bulk):
            offset = 0
            while offset < request.nbytes:
                size = min(BULK_CHUNK, request.nbytes - offset)
                await self._send(talk, protocol.bulk_view(offset, size))
                offset += size
            await self._send(talk, protocol.encode_reply(protocol.BulkEnd(protocol.BULK_TERMINATOR)))

    # --- the limits: every wait bounded, one sweeper for all --------------------------

    async def _recv(self, talk: Conversation, request_due: float) -> bytes:
        """Wait for the next bytes; the sweeper cancels this wait after ``request_due``."""
        talk.due, talk.waiting_for = request_due, "idle-timeout"
        try:
            return await asyncio.get_running_loop().sock_recv(talk.conn, READ_SIZE)
        finally:
            talk.due, talk.waiting_for = None, ""

    async def _send(self, talk: Conversation, data: bytes | memoryview) -> None:
        """Hand ``data`` to the kernel, waiting while the client does not read; count what was taken.

        asyncio's ``sock_sendall`` cannot say whether a long wait made progress, so
        this is its loop, with the stall bound: every wait for room in the send
        buffer may last at most ``stall_timeout`` (the sweeper ends it), and room
        can only come from the client taking bytes in.
        """
        view = memoryview(data)
        while view:
            try:
                sent = talk.conn.send(view)
            except BlockingIOError:
                sent = 0
            if sent:
                view = view[sent:]
                talk.record.bytes_out += sent
            else:
                await self._writable(talk)

    async def _writable(self, talk: Conversation) -> None:
        conn = talk.conn
        loop = asyncio.get_running_loop()
        room: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not room.done():
                room.set_result(None)

        loop.add_writer(conn.fileno(), wake)
        talk.due, talk.waiting_for = time.monotonic() + self.config.stall_timeout, "stalled"
        talk.not_sent = not_sent_bytes(conn)
        try:
            await room
        finally:
            loop.remove_writer(conn.fileno())
            talk.due, talk.waiting_for = None, ""

    async def _sweep(self) -> None:
        """Cancel the waits that passed their bound (idle timeout, stall timeout).

        One sweeper for the whole server rather than a timer per wait: on Python
        3.11 ``asyncio.wait_for`` wraps every read in a new Task, and even a bare
        timer handle per read showed in bench/server.py. The price is precision:
        a connection is closed up to a quarter of its bound late (at most 1 s).

        A wait for room in the send buffer can outlast its bound while the client
        reads: the kernel says "writable" only once a third of the buffer is free,
        and a reader taking a little at a time frees less. So every sweep looks at
        each stalled conversation's bytes not yet sent (SIOCOUTQNSD): when they
        fell, the client made room, and its bound starts again from now. Bytes
        already sent and only waiting for their ACK do not count: the client's
        kernel acknowledges into a buffer its program never reads, and counting
        that once made a stalled reader last twice its bound.
        """
        period = min(1.0, self.config.idle_timeout / 4, self.config.stall_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            self.access_log.flush_repeats()
            for talk in list(self._conversations):
                if talk.waiting_for == "stalled":
                    left = not_sent_bytes(talk.conn)
                    if left < talk.not_sent:
                        talk.not_sent, talk.due = left, now + self.config.stall_timeout
                        continue
                if talk.due is None or talk.due > now or talk.task is None:
                    continue
                talk.ended_by = talk.waiting_for
                talk.task.cancel()


def listen(host: str, port: int) -> list[socket.socket]:
    """Non-blocking listening TCP sockets on every address ``host`` names, on one port.

    A name may stand for several addresses (``localhost`` is often 127.0.0.1 and
    ::1), and a client may try any of them, so, as ``asyncio.start_server`` does,
    we listen on each; with port 0 the first socket picks the port and the others
    take the same one.
    """
    listeners: list[socket.socket] = []
    try:
        for family, _, _, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if any(listener.getsockname()[0] == address[0] for listener in listeners):
                continue
            if listeners:
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            # The kernel's largest accept queue: a burst of clients waits there
            # instead of being refused, and the cap above answers them one by one.
            listener = socket.create_server(address, family=family, backlog=socket.SOMAXCONN)
            listener.setblocking(False)
            listeners.append(listener)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def not_sent_bytes(conn: socket.socket) -> int:
    """Bytes in the socket's send queue not sent yet (SIOCOUTQNSD): they leave only as the client
    makes room (its window opens)."""
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(conn.fileno(), SIOCOUTQNSD, b"\0" * 4))[0]
        return queued
    except OSError:
        return 0


def _say_quickly(talk: Conversation, message: bytes) -> None:
    """A last line into the send buffer if it fits at once (never a wait)."""
    try:
        talk.conn.send(message)
    except OSError:
        pass


async def _linger(conn: socket.socket) -> None:
    """Close our side first, then read and drop what the client still sends.

    Closing a socket whose receive buffer still holds data makes the kernel send
    RST instead of FIN, and an RST can destroy our last reply before the client
    has read it (a client that pipelined after QUIT, or sent a line too long).
    So, as web servers do ("lingering close"): FIN first, then wait, at most
    ``LINGER_SECONDS``, for the client's FIN.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(_drop_until_eof(conn), LINGER_SECONDS)
    except (asyncio.TimeoutError, OSError):
        pass


async def _drop_until_eof(conn: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while await loop.sock_recv(conn, READ_SIZE):
        pass


class _DatagramService(asyncio.DatagramProtocol):
    """UDP: one datagram is one request, answered by one datagram."""

    def __init__(self, config: ServerConfig, access_log: AccessLog | None = None) -> None:
        self.config = config
        self.access_log = access_log or AccessLog()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)     # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        record = ConnectionRecord("udp", addr, bytes_in=len(data), close="datagram")
        payload = protocol.encode_reply(self.reply_to_datagram(data))
        if len(payload) > MAX_DATAGRAM:   # UPPER can lengthen a text: some letters grow in upper case
            payload = protocol.encode_reply(Err("the reply would not fit in one datagram: send less"))
            record.close = "reply-too-long"
        assert self.transport is not None
        try:
            self.transport.sendto(payload, addr)
            record.bytes_out = len(payload)
        except OSError:
            record.close = "send-failed"
        self.access_log.write(record)

    def reply_to_datagram(self, data: bytes) -> Reply:
        line = data[:-1] if data.endswith(b"\n") else data
        if len(data) > self.config.max_line:
            return Err(f"line longer than {self.config.max_line} bytes")
        if b"\n" in line:
            return Err("one request per datagram")
        request = protocol.parse_request_line(line, self.config.bulk_cap)
        if isinstance(request, BadRequest):
            return Err(request.reason)
        if isinstance(request, Bulk):
            return Err("BULK needs TCP: its reply does not fit in one datagram")
        return reply_to(request)


async def serve(config: ServerConfig, ready: Callable[[LabServer], None] | None = None) -> None:
    """Run a server until SIGTERM or SIGINT; call ``ready(server)`` once it listens."""
    server = LabServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.shutdown)
    if ready is not None:
        ready(server)
    await server.wait_stopped()
    log.info("stopped")


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="python -m lab.server",
        description="Serve the lab protocol (ECHO, UPPER, TIME, BULK, QUIT) over TCP and UDP.",
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP and UDP port (default %(default)s)")
    parser.add_argument("--max-line", type=int, default=defaults.max_line, help="longest request line in bytes (default %(default)s)")
    parser.add_argument("--bulk-cap", type=int, default=defaults.bulk_cap, help="largest BULK in bytes (default %(default)s)")
    parser.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout, help="seconds a connection may stay silent (default %(default)s)")
    parser.add_argument("--stall-timeout", type=float, default=defaults.stall_timeout, help="seconds a reply may wait for the client to read before the connection is closed (default %(default)s)")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections, help="connections served at once; the next gets ERR busy (default %(default)s)")
    parser.add_argument("--max-per-source", type=int, default=defaults.max_per_source, help="connections from one address at once (default: half of --max-connections)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if (args.max_line < 16 or args.bulk_cap < 0 or not 0 < args.idle_timeout < math.inf
            or not 0 < args.stall_timeout < math.inf or args.max_connections < 1 or args.max_per_source < 0):
        parser.error("--max-line >= 16, --bulk-cap >= 0, --idle-timeout and --stall-timeout > 0 (finite), "
                     "--max-connections >= 1 and --max-per-source >= 0")
    return ServerConfig(
        host=args.host,
        port=args.port,
        max_line=args.max_line,
        bulk_cap=args.bulk_cap,
        idle_timeout=args.idle_timeout,
        stall_timeout=args.stall_timeout,
        max_connections=args.max_connections,
        max_per_source=args.max_per_source,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(message)s",
        datefmt=TIME_FORMAT,
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"lab.server: cannot listen on {config.host} port {config.port}: {listen_error(exc)}",
              file=sys.stderr)
        return 1
    return 0


def listen_error(exc: OSError) -> str:
    """Why listening failed, and what to do about it, in one line."""
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        advice = "give --host a name or address of this machine, such as 127.0.0.1 or 0.0.0.0"
    elif exc.errno == errno.EACCES:
        advice = "ports below 1024 need root; pick another --port"
    else:
        advice = "pick another --port or stop what uses it"
    reason = exc.strerror if isinstance(exc, socket.gaierror) else os.strerror(exc.errno or 0)
    return f"{reason} ({advice})"


if __name__ == "__main__":
    sys.exit(main())
