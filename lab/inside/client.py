"""The lab's client: send requests to the server and show its replies.

Plain blocking sockets on purpose: each call below is one thing a learner can find
in the capture. ``create_connection`` is the three-way handshake, ``sendall`` puts a
request in one or more segments, ``recv`` waits for the reply, ``shutdown(SHUT_WR)``
sends our FIN and the final ``recv`` returning b"" is the server's FIN.

Modes: one-shot (each MESSAGE is one request line), ``--interactive`` (a small
REPL), ``--step`` (pause before each thing that puts packets on the wire, saying
which), ``--bulk N`` (download N bytes and report throughput), ``--udp``.

Exit codes, so scripts and the lab's tasks can tell failures apart:

====  ==========================================================
0     every request got an OK reply
1     at least one reply was ERR
2     bad command line
3     connection refused (nothing listens on that port)
4     timed out (no answer, or a UDP datagram or its reply lost)
5     connection reset or closed by the server mid-reply
6     host name could not be resolved
7     the server broke the protocol, or another network error
====  ==========================================================
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import socket
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar, cast

from lab.inside import protocol
from lab.inside.protocol import CLOSED, NEED_DATA, BulkData, BulkEnd, Err, Ok

T = TypeVar("T")

EXIT_OK, EXIT_ERR_REPLY, EXIT_USAGE = 0, 1, 2
EXIT_REFUSED, EXIT_TIMEOUT, EXIT_RESET, EXIT_DNS, EXIT_PROTOCOL = 3, 4, 5, 6, 7
RECV_SIZE = 256 * 1024


class ClientError(Exception):
    """A failure the user sees as one line, with the exit code that names it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def request_from_line(line: str) -> tuple[protocol.Request | None, bytes]:
    """The request a typed line stands for (None if the server will say ERR), and its bytes.

    The line is sent as typed, even when it is not a valid request: seeing the
    server's ERR is part of learning the protocol.
    """
    if "\n" in line:
        raise ClientError(f"a message must be one line, got {line!r}", EXIT_USAGE)
    data = line.encode("utf-8") + b"\n"
    parsed = protocol.parse_request_line(data[:-1])
    return (None if isinstance(parsed, protocol.BadRequest) else parsed), data


class Pauser:
    """--step: say what the next step puts on the wire, then wait for Enter."""

    def __init__(self, enabled: bool, prompt: Callable[[str], str] = input) -> None:
        self.enabled = enabled
        self._prompt = prompt

    def __call__(self, what: str) -> None:
        if self.enabled:
            print(f"next: {what}", flush=True)
            self._prompt("      press Enter to go on ")
            if not sys.stdin.isatty():
                print()  # a terminal echoes the Enter; a pipe does not


class Client:
    """One TCP connection to the lab server, speaking lab.protocol."""

    def __init__(self, host: str, port: int, timeout: float, pause: Pauser | None = None,
                 receive_buffer: int | None = None, nagle: bool = False, split_at: int | None = None,
                 congestion_control: str | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.pause = pause or Pauser(False)
        self.receive_buffer = receive_buffer
        self.nagle = nagle              # keep Nagle's algorithm (no TCP_NODELAY): small writes wait
        self.split_at = split_at        # write each request in two: its first split_at bytes, then the rest
        self.congestion_control = congestion_control     # asked of the server first (CC NAME), if given
        self.sock: socket.socket | None = None
        self.decoder = protocol.ReplyDecoder()

    def connect(self) -> None:
        self.pause(f"connect to {self.host}:{self.port} (SYN ->, <- SYN/ACK, ACK ->)")
        self.sock = _network_call(self._open, self.host, self.port)
        # Each request is one write, sent at once; with Nagle's algorithm (--nagle) a small
        # write waits while earlier data is unacknowledged: what the nagle scenario shows.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if self.nagle else 1)

    def _open(self) -> socket.socket:
        if self.receive_buffer is None:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        # Before connect: the window the SYN offers, and its scale, follow the buffer; a
        # buffer set by hand is also one the kernel no longer grows (no autotuning).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.settimeout(self.timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def send_line(self, line: str) -> tuple[protocol.Reply, int]:
        """Send one request line; return the reply and how many BULK bytes followed it (read, not kept)."""
        request, data = request_from_line(line)
        self.pause(f"send {data!r} ({len(data)} bytes in a segment with PSH ->, then <- the reply)")
        return self.exchange(request, data)

    def exchange(self, request: protocol.Request | None, data: bytes,
                 on_bulk: Callable[[bytes], None] | None = None) -> tuple[protocol.Reply, int]:
        """Send ``data`` and read the whole reply; return it and how many BULK bytes came."""
        sock = self.sock
        assert sock is not None, "connect() first"
        if request is not None:
            self.decoder.expect(request)
        for piece in ((data[:self.split_at], data[self.split_at:]) if self.split_at else (data,)):
            if piece:
                _network_call(functools.partial(sock.sendall, piece), self.host, self.port)
        reply: protocol.Reply | None = None
        bulk_bytes = 0
        for event in self._events():
            if isinstance(event, BulkData):
                bulk_bytes += len(event.data)
                if on_bulk is not None:
                    on_bulk(event.data)
                continue
            if isinstance(event, BulkEnd):
                if reply is None:
                    raise ClientError("the server ended a download it never started", EXIT_PROTOCOL)
                return reply, bulk_bytes
            reply = event
            if not (isinstance(request, protocol.Bulk) and isinstance(reply, Ok)):
                return reply, bulk_bytes
        raise ClientError("the server closed the connection before replying", EXIT_RESET)

    def _events(self) -> Iterator[protocol.Reply | BulkData | BulkEnd]:
        sock = self.sock
        assert sock is not None, "connect() first"
        while True:
            event = self.decoder.next_event()
            if event is CLOSED:
                return
            if event is not NEED_DATA:
                yield cast("protocol.Reply | BulkData | BulkEnd", event)
                continue
            data = _network_call(lambda: sock.recv(RECV_SIZE), self.host, self.port)
            try:
                self.decoder.receive_data(data)
            except protocol.RemoteProtocolError as exc:
                raise ClientError(f"the server broke the protocol: {exc}", EXIT_PROTOCOL) from None

    @contextlib.contextmanager
    def conversation(self) -> Iterator["Client"]:
        """Connected for the block: closed politely after it, dropped at once if it fails.

        A polite close reads until the server's FIN; after Ctrl-C in the middle of
        a BULK that would mean reading the rest of it first, so a block that ends
        in an exception (Ctrl-C, a protocol error) only closes the socket.
        """
        self.connect()
        try:
            if self.congestion_control:
                self.ask_congestion_control(self.congestion_control)
            yield self
        except BaseException:
            self.abort()
            raise
        self.close()

    def ask_congestion_control(self, name: str) -> None:
        """CC NAME: the server sends on this connection with ``name``, or the client stops here."""
        request = protocol.CongestionControl(name)
        reply, _ = self.exchange(request, protocol.encode_request(request))
        if isinstance(reply, Err):
            raise ClientError(f"the server would not send with {name}: {reply.reason}", EXIT_ERR_REPLY)

    def abort(self) -> None:
        """Close at once, without waiting for the server (unread data makes the kernel send RST)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        """Send our FIN and wait for the server's, so the teardown is complete on the wire."""
        if self.sock is None:
            return
        self.pause("close (FIN ->, <- FIN, ACK ->)")
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while self.sock.recv(RECV_SIZE):
                pass
        except OSError:
            pass
        finally:
            self.sock.close()
            self.sock = None


def _network_call(call: Callable[[], T], host: str, port: int) -> T:
    """Run a socket call, turning its failures into one-line ClientErrors."""
    try:
        return call()
    except socket.gaierror:
        raise ClientError(f"cannot resolve host {host!r} (check the name, or use an IP address)", EXIT_DNS) from None
    except ConnectionRefusedError:
        raise ClientError(f"connection refused by {host}:{port} (is the server running on that port?)", EXIT_REFUSED) from None
    except (socket.timeout, TimeoutError):
        raise ClientError(f"no answer from {host}:{port} in time (server down, or packets dropped?)", EXIT_TIMEOUT) from None
    except (ConnectionResetError, BrokenPipeError):
        raise ClientError(f"connection to {host}:{port} was reset by the server", EXIT_RESET) from None
    except OSError as exc:
        raise ClientError(f"network error talking to {host}:{port}: {exc.strerror or exc}", EXIT_PROTOCOL) from None


def show(reply: protocol.Reply) -> int:
    """Print a reply as the server sent it; return the exit code it stands for."""
    if isinstance(reply, Ok):
        print(f"OK {reply.text}", flush=True)
        return EXIT_OK
    print(f"ERR {reply.reason}", flush=True)
    return EXIT_ERR_REPLY


def run_lines(client: Client, lines: Iterable[str]) -> int:
    """One connection: each line a request, each reply shown; QUIT ends it early."""
    status = EXIT_OK
    with client.conversation():
        for line in lines:
            reply, bulk_bytes = client.send_line(line)
            status = max(status, show(reply))
            if isinstance(reply, Ok) and isinstance(request_from_line(line)[0], protocol.Bulk):
                print(f"({bulk_bytes} bytes of BULK data followed, then the END line; not shown: "
                      "'invoke bulk N' checks and times them)", flush=True)
            if line.strip().upper() == "QUIT":
                break
    return status


def typed_lines(read_line: Callable[[str], str] = input) -> Iterator[str]:
    """The lines a person types at the prompt, without blank ones, until Ctrl-D."""
    while True:
        try:
            line = read_line("> ")
        except EOFError:
            print()
            return
        if line.strip():
            yield line


def run_interactive(client: Client, read_line: Callable[[str], str] = input) -> int:
    """The REPL: requests typed one by one on one connection."""
    print(f"connected to {client.host}:{client.port}; type requests "
          f"({', '.join(protocol.VERBS)}), Ctrl-D to quit", flush=True)
    return run_lines(client, typed_lines(read_line))


def run_bulk(client: Client, nbytes: int, pause_after: int | None = None, pause_for: float = 0.0,
             note: str = "") -> int:
    """Download nbytes, check every byte against the pattern, report throughput.

    With ``pause_after``, the client stops reading for ``pause_for`` seconds once
    that many bytes have come (a slow reader): the kernel keeps receiving until
    the socket's buffer is full, then advertises a zero window, and the server's
    TCP probes it until the client reads again and a window update opens it.
    """
    offset = 0
    corrupt_at: int | None = None
    paused = pause_after is None

    def check(chunk: bytes) -> None:
        nonlocal offset, corrupt_at, paused
        if corrupt_at is None and chunk != protocol.bulk_pattern(offset, len(chunk)):
            corrupt_at = offset
        offset += len(chunk)
        if not paused and pause_after is not None and offset >= pause_after:
            paused = True
            print(f"reading nothing for {pause_for:g} s after {offset} bytes (a slow reader)", flush=True)
            time.sleep(pause_for)

    with client.conversation():
        request = protocol.Bulk(nbytes, note)
        data = protocol.encode_request(request)
        client.pause(f"send {data!r}, then <- {nbytes} bytes of data")
        started = time.monotonic()
        reply, received = client.exchange(request, data, on_bulk=check)
        elapsed = time.monotonic() - started
    if isinstance(reply, Err):
        return show(reply)
    if received != nbytes or corrupt_at is not None:
        where = f"first bad byte at {corrupt_at}" if corrupt_at is not None else f"got {received}"
        raise ClientError(f"BULK {nbytes}: data did not match the pattern ({where})", EXIT_PROTOCOL)
    print(f"OK received {received} bytes in {elapsed:.3f} s ({rate_words(received / elapsed if elapsed > 0 else 0)})",
          flush=True)
    return EXIT_OK


def rate_words(bytes_per_s: float) -> str:
    """A rate in bytes and in bits per second, in units that show it: 300 kB over 6 s was
    "0.0 MB/s, 0 Mbit/s"; it is "48.6 kB/s, 389 kbit/s"."""
    if bytes_per_s >= 1e6 / 8 * 10:                 # 10 Mbit/s and more
        return f"{bytes_per_s / 1e6:.1f} MB/s, {bytes_per_s * 8 / 1e6:.0f} Mbit/s"
    if bytes_per_s >= 1e6 / 8:                      # 1 to 10 Mbit/s
        return f"{bytes_per_s / 1e6:.2f} MB/s, {bytes_per_s * 8 / 1e6:.1f} Mbit/s"
    return f"{bytes_per_s / 1e3:.1f} kB/s, {bytes_per_s * 8 / 1e3:.0f} kbit/s"


def run_flows(clients: list[Client], nbytes: int, note: str = "") -> int:
    """Several BULK downloads at once, one connection each: flows that share the link's
    bottleneck, for a lesson on fairness. Each reports as a single download does."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        return max(pool.map(lambda client: run_bulk(client, nbytes, note=note), clients))


def run_udp(host: str, port: int, timeout: float, messages: list[str]) -> int:
    """Each message is one datagram; each reply must come back within the timeout."""
    status = EXIT_OK
    family_addr = _network_call(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0], host, port)
    family, _, _, _, address = family_addr
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for message in messages:
            _, data = request_from_line(message)
            _network_call(functools.partial(sock.sendto, data, address), host, port)
            try:
                payload, _ = sock.recvfrom(RECV_SIZE)
            except (socket.timeout, TimeoutError):
                raise ClientError(f"no UDP reply from {host}:{port} within {timeout:g} s "
                                  "(UDP does not retransmit: the datagram or its reply was lost, "
                                  "or nothing listens)", EXIT_TIMEOUT) from None
            except ConnectionRefusedError:
                raise ClientError(f"{host}:{port} answered with ICMP port unreachable "
                                  "(nothing listens on that UDP port)", EXIT_REFUSED) from None
            try:
                reply = protocol.parse_reply_line(payload.rstrip(b"\n"))
            except protocol.RemoteProtocolError as exc:
                raise ClientError(f"the server broke the protocol: {exc}", EXIT_PROTOCOL) from None
            status = max(status, show(reply))
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.client",
        description="Send requests to the lab server and print its replies.",
        epilog="Example: python -m lab.client --port 7070 'ECHO hello' 'UPPER tcp' TIME",
    )
    parser.add_argument("messages", nargs="*", metavar="MESSAGE", help="a request line, e.g. 'ECHO hello'")
    parser.add_argument("--host", default="127.0.0.1", help="server name or address (default %(default)s)")
    parser.add_argument("--port", type=int, default=protocol.PORT, help="server port (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for connect and each reply (default %(default)s)")
    parser.add_argument("--udp", action="store_true", help="send each MESSAGE as one UDP datagram")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--interactive", "-i", action="store_true", help="type requests one by one")
    mode.add_argument("--bulk", type=int, metavar="N", help="download N bytes with BULK and report throughput")
    parser.add_argument("--step", action="store_true", help="pause before connect, each send and close, saying what goes on the wire")
    parser.add_argument("--rcvbuf", type=int, metavar="BYTES", help="the socket's receive buffer (a small one fills fast)")
    parser.add_argument("--flows", type=int, default=1, metavar="N",
                        help="with --bulk: N downloads at once, each on its own connection (default %(default)s)")
    parser.add_argument("--cc", metavar="ALGORITHM[,ALGORITHM...]",
                        help="ask the server to send with this congestion control (CC request); with --flows, "
                             "one per flow in turn (e.g. bbr,reno)")
    parser.add_argument("--nagle", action="store_true",
                        help="keep Nagle's algorithm (no TCP_NODELAY): a small write waits for the ACK of the last")
    parser.add_argument("--split-at", type=int, metavar="BYTES",
                        help="write each request in two: its first BYTES, then the rest (write, write, read)")
    parser.add_argument("--note", default="", metavar="TEXT", help="with --bulk: a note after the byte count "
                        "(the server ignores it; a student's says whose the request is)")
    parser.add_argument("--pause-after", type=int, metavar="BYTES", help="with --bulk: stop reading after BYTES ...")
    parser.add_argument("--pause-for", type=float, default=2.0, metavar="S",
                        help="... for S seconds (default %(default)s): a slow reader, a zero window")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.port <= 65535:
        parser.error(f"--port must be 1..65535, got {args.port}")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.bulk is not None and args.bulk < 0:
        parser.error("--bulk needs a byte count >= 0")
    if args.udp and (args.interactive or args.bulk is not None or args.step):
        parser.error("--udp sends MESSAGEs only (no --interactive, --bulk or --step)")
    if not (args.messages or args.interactive or args.bulk is not None):
        parser.error("give at least one MESSAGE, or --interactive, or --bulk N")
    if args.messages and (args.interactive or args.bulk is not None):
        parser.error("MESSAGEs cannot be combined with --interactive or --bulk")
    if args.pause_after is not None and (args.bulk is None or args.pause_after < 0 or not 0 < args.pause_for <= 600):
        parser.error("--pause-after BYTES goes with --bulk; --pause-for is 0 to 600 seconds")
    if args.rcvbuf is not None and not 1024 <= args.rcvbuf <= 1 << 30:
        parser.error("--rcvbuf is 1024 bytes to 1 GiB")
    if not 1 <= args.flows <= 8 or (args.flows > 1 and (args.bulk is None or args.pause_after is not None)):
        parser.error("--flows is 1 to 8, with --bulk (and no --pause-after)")
    algorithms = args.cc.split(",") if args.cc else [None]
    if args.cc and not all(name and re.fullmatch(r"[a-z0-9_]{1,15}", name) for name in algorithms):
        parser.error("--cc takes algorithm names, e.g. reno or bbr,reno")
    if args.split_at is not None and not 1 <= args.split_at <= protocol.DEFAULT_MAX_LINE:
        parser.error(f"--split-at is 1 to {protocol.DEFAULT_MAX_LINE} bytes")
    try:
        if args.udp:
            return run_udp(args.host, args.port, args.timeout, args.messages)
        client = Client(args.host, args.port, args.timeout, Pauser(args.step), args.rcvbuf, args.nagle, args.split_at,
                        algorithms[0])
        if args.interactive:
            return run_interactive(client)
        if args.bulk is not None and args.flows > 1:
            clients = [client] + [Client(args.host, args.port, args.timeout, Pauser(args.step), args.rcvbuf,
                                         congestion_control=algorithms[number % len(algorithms)])
                                  for number in range(1, args.flows)]
            return run_flows(clients, args.bulk, args.note)
        if args.bulk is not None:
            return run_bulk(client, args.bulk, args.pause_after, args.pause_for, args.note)
        return run_lines(client, args.messages)
    except ClientError as exc:
        print(f"lab.client: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lab.client: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
