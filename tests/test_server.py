"""The real server, in a child process or (for what needs a faked name) in this one, over loopback."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from lab.inside import protocol
from lab.inside.server import AccessLog, LabServer, ServerConfig
from tests.helpers import ROOT, ServerProcess, exchange, recv_until


def test_echo_upper_time_and_quit(server):
    reply = exchange(server.port, b"ECHO hi\nUPPER shout\nTIME\nQUIT\nECHO never answered\n")
    lines = reply.decode().splitlines()
    assert lines[:2] == ["OK hi", "OK SHOUT"]
    assert lines[2].startswith("OK 20") and lines[2].endswith("Z")
    assert lines[3:] == ["OK bye"]


def test_bad_lines_get_err_and_the_connection_goes_on(server):
    reply = exchange(server.port, b"\nNOPE\nECHO \xff\nECHO still here\n")
    assert reply.splitlines() == [
        b"ERR empty request (try: ECHO hello)",
        b"ERR unknown verb 'NOPE' (verbs: ECHO, UPPER, TIME, BULK, CC, QUIT)",
        b"ERR request is not valid UTF-8 (byte 5)",
        b"OK still here",
    ]


def test_bulk_streams_exactly_n_bytes_of_the_pattern_then_a_terminator(server):
    n = 3_000_000
    reply = exchange(server.port, f"BULK {n}\n".encode())
    header = b"OK 3000000 bytes follow\n"
    assert reply.startswith(header)
    body = reply[len(header):len(header) + n]
    assert body == protocol.bulk_pattern(0, n)
    assert reply[len(header) + n:] == b"OK end of bulk\n"


def test_an_over_long_line_is_answered_then_closed():
    with ServerProcess("--max-line", "100") as srv:
        with srv.connect() as sock:
            sock.sendall(b"ECHO first\n" + b"x" * 200)
            reply = recv_until(sock, b"\x00")
        assert reply == b"OK first\nERR line longer than 100 bytes\n"
    assert any("close=line-too-long" in line for line in srv.log_lines)


def test_the_connection_over_the_cap_gets_a_polite_busy():
    with ServerProcess("--max-connections", "2", "--max-per-source", "2") as srv:
        first, second = srv.connect(), srv.connect()
        for sock in (first, second):
            sock.sendall(b"ECHO held\n")
            assert recv_until(sock, b"\n") == b"OK held\n"
        with srv.connect() as third:
            assert recv_until(third, b"\x00") == b"ERR busy, try again later\n"
        first.close()
        second.close()


def test_running_out_of_file_descriptors_pauses_accepting_and_does_not_stop_it():
    with ServerProcess(max_open_files=24) as srv:
        held = [srv.connect() for _ in range(30)]  # more than the server can open
        deadline = time.monotonic() + 10
        while not any("cannot accept" in line for line in srv.log_lines) and time.monotonic() < deadline:
            srv.log_lines.append(srv.proc.stderr.readline())
        for sock in held:
            sock.close()
        assert exchange(srv.port, b"ECHO accepting again\n") == b"OK accepting again\n"
    assert any("cannot accept: Too many open files" in line for line in srv.log_lines)


def test_an_idle_connection_is_closed_after_the_timeout():
    with ServerProcess("--idle-timeout", "0.3") as srv:
        with srv.connect() as sock:
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 5
    assert any("close=idle-timeout" in line for line in srv.log_lines)


def test_one_structured_log_line_per_connection(server):
    exchange(server.port, b"ECHO abc\n")
    server.terminate()
    [line] = [l for l in server.log_lines if " conn proto=tcp" in l]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} conn ", line), line
    assert "peer=127.0.0.1:" in line
    assert "bytes_in=9 bytes_out=7" in line
    assert "duration_ms=" in line and "close=client" in line


def test_udp_round_trip_on_the_same_port(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for request, expected in [
            (b"ECHO over udp\n", b"OK over udp\n"),
            (b"UPPER no newline", b"OK NO NEWLINE\n"),
            (b"BULK 10\n", b"ERR BULK needs TCP: its reply does not fit in one datagram\n"),
            (b"ECHO a\nECHO b\n", b"ERR one request per datagram\n"),
        ]:
            sock.sendto(request, ("127.0.0.1", server.port))
            assert sock.recvfrom(1000)[0] == expected


async def _client(port: int, client_id: int, requests: int) -> list[tuple[bytes, bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pairs = []
    for i in range(requests):
        text = f"client {client_id} request {i}".encode()
        writer.write(b"ECHO " + text + b"\n")
        pairs.append((b"OK " + text + b"\n", await reader.readline()))
    writer.close()
    await writer.wait_closed()
    return pairs


def run_clients(port: int, clients: int, requests: int) -> list[tuple[bytes, bytes]]:
    async def main():
        results = await asyncio.gather(*(_client(port, c, requests) for c in range(clients)))
        return [pair for result in results for pair in result]
    return asyncio.run(main())


def test_200_concurrent_clients_times_100_requests_all_answered_in_order(server):
    pairs = run_clients(server.port, 200, 100)
    assert len(pairs) == 20_000
    mismatched = [(want, got) for want, got in pairs if want != got]
    assert mismatched == []


def _misbehave(port: int, kind: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            if kind == "garbage":
                sock.sendall(bytes(range(256)) * 40 + b"\n")
                recv_until(sock, b"\n")
            elif kind == "half-line":
                sock.sendall(b"ECHO this line never ends")
                time.sleep(0.5)
            elif kind == "ten-megabytes":
                chunk = b"Z" * 65536
                for _ in range(160):
                    sock.sendall(chunk)
            elif kind == "reset":
                sock.sendall(b"BULK 50000000\nECHO half")
                sock.recv(1000)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server closing on us is the expected outcome for ten-megabytes


@pytest.mark.parametrize("kind", ["garbage", "half-line", "ten-megabytes", "reset"])
def test_a_misbehaving_client_does_not_disturb_the_others(server, kind):
    bad = threading.Thread(target=lambda: [_misbehave(server.port, kind) for _ in range(3)])
    bad.start()
    pairs = run_clients(server.port, 20, 50)
    bad.join()
    assert [want for want, _ in pairs] == [got for _, got in pairs]
    assert exchange(server.port, b"ECHO still alive\n") == b"OK still alive\n"
    assert server.proc.poll() is None


def test_ten_megabytes_without_newline_is_cut_off_with_err(server):
    with server.connect() as sock:
        sock.sendall(b"Z" * 65536)  # exactly the limit, no newline yet
        assert recv_until(sock, b"\n") == b"ERR line longer than 65536 bytes\n"


def test_a_flood_without_newline_still_gets_its_err_then_a_fin_not_a_reset(server):
    # The server stops reading at the limit; closing with 10 MB unread would send RST.
    with server.connect() as sock:
        sock.sendall(b"Z" * 10_000_000)
        assert recv_until(sock, b"\x00") == b"ERR line longer than 65536 bytes\n"


def test_sigterm_finishes_replies_in_flight_closes_idle_ones_and_exits_0(server):
    idle = server.connect()
    busy = server.connect()
    n = 20_000_000
    busy.sendall(f"BULK {n}\n".encode())
    header = recv_until(busy, b"\n")
    started = time.monotonic()
    server.proc.send_signal(15)
    received = len(header) - len(b"OK 20000000 bytes follow\n")
    tail = bytearray()
    while chunk := busy.recv(1 << 20):
        received += len(chunk)
        tail = (tail + chunk)[-100:]
    assert received == n + len(b"OK end of bulk\n")
    assert tail.endswith(b"OK end of bulk\n")
    assert idle.recv(100) == b""
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    idle.close()
    busy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


@pytest.mark.needs("nc")
def test_a_real_nc_can_speak_the_protocol(server):
    result = subprocess.run(
        ["nc", "-q", "1", "127.0.0.1", str(server.port)],
        input=b"ECHO hi\nQUIT\n", capture_output=True, timeout=10,
    )
    assert result.stdout == b"OK hi\nOK bye\n"


@pytest.mark.needs("nc")
def test_a_real_nc_over_udp(server):
    result = subprocess.run(
        ["nc", "-u", "-w", "1", "127.0.0.1", str(server.port)],
        input=b"UPPER datagram\n", capture_output=True, timeout=10,
    )
    assert result.stdout == b"OK DATAGRAM\n"


def test_a_port_in_use_is_one_line_and_exit_1(server):
    result = subprocess.run(
        [sys.executable, "-m", "lab.server", "--port", str(server.port)],
        capture_output=True, text=True, timeout=10, cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "pick another --port" in result.stderr


@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])  # unresolvable; not ours
def test_a_host_that_is_not_this_machine_is_one_line_and_exit_1(host):
    result = subprocess.run(
        [sys.executable, "-m", "lab.server", "--host", host, "--port", "0"],
        capture_output=True, text=True, timeout=10, cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "give --host a name or address of this machine" in result.stderr


def test_a_host_name_with_two_addresses_is_served_on_both(monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def two_addresses(host, port, *args, **kwargs):
        if host == "both.test":  # as localhost resolves on many machines
            return real_getaddrinfo("127.0.0.1", port, *args, **kwargs) + \
                real_getaddrinfo("::1", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)

    async def ask(address: str, port: int) -> bytes:
        reader, writer = await asyncio.open_connection(address, port)
        writer.write(b"ECHO via " + address.encode() + b"\n")
        writer.write_eof()
        reply = await reader.read()
        writer.close()
        return reply

    async def scenario() -> list[bytes]:
        server = LabServer(ServerConfig(host="both.test", port=0), AccessLog(io.StringIO()))
        await server.start()
        try:
            return [await ask(address, server.port) for address in ("127.0.0.1", "::1")]
        finally:
            server.shutdown()
            await server.wait_stopped()

    assert asyncio.run(scenario()) == [b"OK via 127.0.0.1\n", b"OK via ::1\n"]


# --- hostile clients: the limits hold (issue: a client must not get the server killed or locked) ---


def server_rss_kb(srv: ServerProcess) -> int:
    with open(f"/proc/{srv.proc.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_client_trickling_bytes_without_a_newline_is_still_idle():
    with ServerProcess("--idle-timeout", "0.5") as srv:
        with srv.connect() as sock:
            started = time.monotonic()
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                while time.monotonic() - started < 5:
                    sock.sendall(b"E")          # never a whole request
                    time.sleep(0.1)
            assert time.monotonic() - started < 2.5
    assert any("close=idle-timeout" in line for line in srv.log_lines)


def stalled_bulk_reader(srv: ServerProcess, nbytes: int = 100_000_000) -> socket.socket:
    """A client that asks for BULK with a tiny receive buffer and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(f"BULK {nbytes}\n".encode())
    return sock


@pytest.mark.slow          # it waits out a real stall timeout
def test_a_reader_that_never_reads_is_closed_after_the_stall_timeout_and_frees_its_slot():
    with ServerProcess("--stall-timeout", "0.5", "--max-connections", "3", "--max-per-source", "3") as srv:
        stalled = [stalled_bulk_reader(srv) for _ in range(3)]
        with srv.connect() as turned_away:
            assert recv_until(turned_away, b"\n") == b"ERR busy, try again later\n"
        time.sleep(2.5)
        assert exchange(srv.port, b"ECHO my turn\n") == b"OK my turn\n"
        for sock in stalled:
            sock.close()
    assert sum("close=stalled" in line for line in srv.log_lines) == 3


@pytest.mark.slow          # it pauses in real time
def test_a_slow_reader_that_pauses_less_than_the_stall_timeout_gets_everything():
    n = 200_000_000          # more than the socket buffers hold: each pause stops the server
    with ServerProcess("--stall-timeout", "1.5") as srv:
        with srv.connect() as sock:
            sock.sendall(f"BULK {n}\n".encode())
            received = 0
            for _ in range(3):
                time.sleep(0.8)                       # the window fills, the server waits
                received += len(sock.recv(1 << 20))
            expected = n + len(f"OK {n} bytes follow\nOK end of bulk\n")
            while received < expected and (chunk := sock.recv(1 << 20)):
                received += len(chunk)
            assert received == expected
    assert not any("close=stalled" in line for line in srv.log_lines)


@pytest.mark.slow          # it waits out real stalls
def test_many_stalled_bulk_readers_that_reset_do_not_grow_the_servers_memory():
    """The OOM attack, scaled down: rounds of BULK readers that never read, then reset."""
    with ServerProcess("--stall-timeout", "30") as srv:
        exchange(srv.port, b"BULK 1000000\n")        # warm up: one BULK served whole
        before = server_rss_kb(srv)
        for _ in range(4):
            stalled = [stalled_bulk_reader(srv, 1 << 30) for _ in range(100)]
            time.sleep(0.3)
            for sock in stalled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()                          # RST
            time.sleep(0.3)
        after = server_rss_kb(srv)
        assert exchange(srv.port, b"ECHO still here\n") == b"OK still here\n"
    assert after - before < 12_000, f"server RSS grew from {before} to {after} kB"


def test_a_udp_reply_too_long_for_a_datagram_is_an_err_and_the_log_says_so(server):
    text = "\u0149" * 32_000                            # 2 bytes each; upper case: 3 bytes each
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(f"UPPER {text}\n".encode(), ("127.0.0.1", server.port))
        reply, _ = sock.recvfrom(70_000)
    assert reply == b"ERR the reply would not fit in one datagram: send less\n"
    server.terminate()
    assert any("proto=udp" in line and "close=reply-too-long" in line for line in server.log_lines)


def test_cc_sets_the_connections_congestion_control_where_the_kernel_allows_it(server):
    """CC NAME answers OK NAME and the connection's socket then runs it (its tcp_info's algorithm),
    or ERR for a name no kernel has; either way the connection goes on."""
    import socket as sockets

    with sockets.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        stream = conn.makefile("rwb")
        stream.write(b"CC reno\nCC no_such_algo\nECHO still here\n")
        stream.flush()
        assert stream.readline() == b"OK reno\n"
        refused = stream.readline()
        assert refused.startswith(b"ERR congestion control no_such_algo is not to be had here")
        assert stream.readline() == b"OK still here\n"



# --- hostile load: what one source may hold, resets, the log's history -------------------


def from_address(srv: ServerProcess, source: str, timeout: float = 10.0) -> socket.socket:
    """A connection to the server from another loopback address (127.0.0.2, ...): another client."""
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", srv.port))
    return sock


def read_log_meanwhile(srv: ServerProcess) -> threading.Thread:
    """Keep reading the server's log into log_lines: a storm writes more than a pipe holds."""
    def drain() -> None:
        for line in srv.proc.stderr:
            srv.log_lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return reader


def logged_closes(lines: list[str], close: str) -> int:
    """Connections closed so, by the log: a line each, or a line a second and a count of the rest."""
    return sum(int(re.search(r"count=(\d+)", line)[1]) if " conns " in line else 1
               for line in lines if f"close={close}" in line)


def ask(sock: socket.socket, text: bytes = b"ECHO hi\n") -> bytes:
    sock.sendall(text)
    return recv_until(sock, b"\n")


def test_one_source_holds_at_most_its_share_and_the_others_still_get_in():
    """The attack of 512 connections that each send one ECHO every 100 s, scaled down to 20 slots:
    before the per-source share, the attacker held every slot and everyone else got ERR busy."""
    with ServerProcess("--max-connections", "20", "--max-per-source", "10") as srv:
        read_log_meanwhile(srv)
        held, refused = [], 0
        for _ in range(20):
            sock = from_address(srv, "127.0.0.2")
            reply = ask(sock)
            if reply == b"OK hi\n":
                held.append(sock)
            else:
                assert reply == b"ERR busy, try again later\n"
                refused += 1
                sock.close()
        assert len(held) == 10 and refused == 10
        for _ in range(10):                     # another client: every request answered
            with from_address(srv, "127.0.0.1") as sock:
                assert ask(sock, b"ECHO mine\n") == b"OK mine\n"
        for sock in held:
            sock.close()


@pytest.mark.slow          # it waits out real idle times and stalls
def test_when_the_server_is_full_a_newcomer_takes_the_slot_of_the_longest_idle_connection():
    """Two attacking addresses fill every slot and sit idle; a third client is still answered, each
    time, and one idle attacker connection is told why it is closed."""
    with ServerProcess("--max-connections", "20", "--max-per-source", "10") as srv:
        read_log_meanwhile(srv)
        held = [from_address(srv, source) for source in ("127.0.0.2", "127.0.0.3") for _ in range(10)]
        for sock in held:
            assert ask(sock) == b"OK hi\n"
        with from_address(srv, "127.0.0.1") as early:       # nobody has idled a second yet: busy
            assert recv_until(early, b"\n") == b"ERR busy, try again later\n"
        time.sleep(1.3)
        newcomers = [from_address(srv, "127.0.0.1") for _ in range(5)]      # each needs a slot of its own
        for number, sock in enumerate(newcomers):
            assert ask(sock, f"ECHO {number}\n".encode()) == f"OK {number}\n".encode()
        told = []
        time.sleep(0.3)                                   # the closed ones' last line has arrived by now
        for sock in held:
            sock.setblocking(False)
            try:
                told.append(sock.recv(200))
            except BlockingIOError:                       # still held: nothing to read
                pass
            sock.close()
        for sock in newcomers:
            sock.close()
        assert told.count(b"ERR closed to make room for another client\n") == 5
    assert logged_closes(srv.log_lines, "evicted") == 5


def test_a_connection_in_the_middle_of_a_request_never_makes_room():
    from lab.inside.slots import Slots

    idle = {"a": 0.0, "b": None, "c": 5.0}          # b is being answered, c idle for 0.5 s only
    slots: Slots[str] = Slots(3, 3, 1.0, idle.get)
    for holder in idle:
        slots.add("10.0.0.2", holder)
    assert slots.admit("10.0.0.9", now=5.5) == (True, "a")
    idle["a"] = 5.0
    assert slots.admit("10.0.0.9", now=5.5) == (False, None)
    assert slots.admit("10.0.0.9", now=6.5) == (True, "a")   # the first to have idled a second


def test_a_source_at_its_share_gives_up_its_own_idle_slot_not_someone_elses():
    from lab.inside.slots import Slots

    idle = {"x1": 0.0, "x2": 0.0, "y1": 0.0}
    slots: Slots[str] = Slots(10, 2, 1.0, idle.get)
    slots.add("x", "x1"), slots.add("x", "x2"), slots.add("y", "y1")
    assert slots.admit("x", now=9.0)[1] in ("x1", "x2")
    assert slots.admit("y", now=9.0) == (True, None)
    slots.remove("x", "x1"), slots.remove("x", "x1")                   # twice: the second is nothing
    assert slots.held_by("x") == 1 and slots.used == 2


def test_equal_shares_make_no_room_for_a_source_that_already_holds_as_much():
    from lab.inside.slots import Slots

    slots: Slots[str] = Slots(4, 4, 1.0, lambda holder: 0.0)
    for source, holder in (("x", "x1"), ("y", "y1"), ("y", "y2"), ("y", "y3")):
        slots.add(source, holder)
    assert slots.admit("y", now=9.0) == (False, None)        # y holds the most already: nobody yields to it
    assert slots.admit("x", now=9.0) == (True, "y1")         # x holds 1, y 3: y gives up its longest idle
    slots.remove("y", "y1"), slots.add("x", "x2")
    assert slots.admit("x", now=9.0) == (False, None)        # x 2, y 2: y's yielding would only swap them


def reset_storm(port: int, source: str, until: int | threading.Event) -> int:
    """Connect and reset at once, ``until`` times or until the event is set; how many."""
    done = 0
    while (done < until) if isinstance(until, int) else not until.is_set():
        done += 1
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.bind((source, 0))
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            pass
        sock.close()                        # RST
    return done


@pytest.mark.slow          # thousands of real connects
def test_a_storm_of_resets_does_not_turn_a_well_behaved_client_of_the_same_address_away():
    """Connections reset by their client were counted until the accept loop let them go: a storm
    of connect-and-RST pushed a client of the same address to ERR busy."""
    with ServerProcess("--max-connections", "16", "--max-per-source", "16") as srv:
        read_log_meanwhile(srv)
        calm = threading.Event()
        storm = [threading.Thread(target=reset_storm, args=(srv.port, "127.0.0.1", calm)) for _ in range(4)]
        for thread in storm:
            thread.start()
        replies = []
        try:
            for _ in range(60):
                with srv.connect() as sock:
                    replies.append(ask(sock))
        finally:
            calm.set()
            for thread in storm:
                thread.join()
        turned_away = len(replies) - replies.count(b"OK hi\n")
        assert turned_away == 0, f"{turned_away} of {len(replies)} requests turned away"


@pytest.mark.slow          # a storm of real connects
def test_a_storm_of_resets_is_summarised_in_the_log_and_its_history_kept():
    with ServerProcess() as srv:
        read_log_meanwhile(srv)
        exchange(srv.port, b"ECHO before the storm\n")
        reset_storm(srv.port, "127.0.0.2", 2000)
        time.sleep(1.5)                     # the sweeper writes the counts of the seconds that are over
        srv.terminate()
    lines = [line for line in srv.log_lines if "127.0.0.2" in line]
    single = [line for line in lines if " conn " in line and "close=reset" in line]
    counted = sum(int(re.search(r"count=(\d+)", line)[1]) for line in lines if " conns " in line)
    assert len(single) <= 10 and len(single) + counted >= 1900, (len(single), counted)
    assert any("bytes_in=22" in line and "close=client" in line for line in srv.log_lines)   # the history


@pytest.mark.slow          # it waits out real idle times and stalls
@pytest.mark.parametrize("stall", [1.0, 2.0])
def test_a_reader_that_never_reads_is_closed_at_its_stall_timeout_not_twice_it(stall):
    """At --stall-timeout 5 a reader that never read was closed after 10.4 s: the bytes already
    sent, acknowledged into its kernel's buffer, counted as progress and started the wait again."""
    with ServerProcess("--stall-timeout", str(stall)) as srv:
        sock = stalled_bulk_reader(srv)
        deadline = time.monotonic() + 4 * stall + 5
        while not any("close=stalled" in line for line in srv.log_lines) and time.monotonic() < deadline:
            srv.log_lines.append(srv.proc.stderr.readline())
        sock.close()
    [line] = [line for line in srv.log_lines if "close=stalled" in line]
    lasted = float(re.search(r"duration_ms=([\d.]+)", line)[1]) / 1000
    assert stall <= lasted <= stall * 1.25 + 0.3, f"closed after {lasted:.2f} s at --stall-timeout {stall}"
