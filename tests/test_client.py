"""The client as a user runs it: ``python -m lab.client`` in a child process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import ROOT


def run_client(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab.client", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert words in result.stderr


class FakeServer:
    """A loopback TCP listener that misbehaves on purpose, once per connection."""

    def __init__(self, behaviour: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.recv(1000)
        if self.behaviour == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
        elif self.behaviour == "garbage":
            conn.sendall(b"HELLO I am not the lab server\n")
            self.held.append(conn)
        else:  # silent: keep the connection open, never answer
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def fake():
    servers = []

    def make(behaviour: str) -> FakeServer:
        servers.append(FakeServer(behaviour))
        return servers[-1]

    yield make
    for srv in servers:
        srv.close()


def test_messages_are_sent_and_replies_printed(server):
    result = run_client("--port", str(server.port), "ECHO hello", "UPPER tcp")
    assert result.returncode == 0
    assert result.stdout == "OK hello\nOK TCP\n"


def test_requests_written_in_two_pieces_with_nagle_are_answered_the_same(server):
    """The server reads a line, however it arrives: --split-at writes each request in two."""
    result = run_client("--port", str(server.port), "--nagle", "--split-at", "5", "ECHO hello", "UPPER tcp")
    assert result.returncode == 0 and result.stdout == "OK hello\nOK TCP\n"


def test_several_flows_download_at_once_each_checked(server):
    result = run_client("--port", str(server.port), "--bulk", "200000", "--flows", "3")
    assert result.returncode == 0 and result.stdout.count("OK received 200000 bytes") == 3


def test_a_congestion_control_is_asked_of_the_server_first_and_a_refusal_is_one_line(server):
    assert run_client("--port", str(server.port), "--cc", "reno", "ECHO hi").stdout == "OK hi\n"
    flows = run_client("--port", str(server.port), "--bulk", "100000", "--flows", "2", "--cc", "bbr,reno")
    assert flows.returncode == 0 and flows.stdout.count("OK received 100000 bytes") == 2
    assert_one_line_error(run_client("--port", str(server.port), "--cc", "no_such", "ECHO hi"), 1,
                          "the server would not send with no_such")


def test_an_err_reply_is_printed_and_exits_1(server):
    result = run_client("--port", str(server.port), "NOPE", "ECHO after")
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == "OK after"


def test_bulk_downloads_checks_and_reports_throughput(server):
    result = run_client("--port", str(server.port), "--bulk", "5000000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK received 5000000 bytes in ")
    assert "MB/s" in result.stdout


def test_a_bulk_among_requests_says_what_followed_its_header(server):
    result = run_client("--port", str(server.port), "BULK 10", "ECHO after")
    assert result.returncode == 0
    assert result.stdout.splitlines()[:3] == [
        "OK 10 bytes follow", "(10 bytes of BULK data followed, then the END line; not shown: 'invoke bulk N' "
        "checks and times them)", "OK after"]


def test_a_slow_reader_stops_reading_and_still_gets_every_byte(server):
    result = run_client("--port", str(server.port), "--bulk", "300000", "--rcvbuf", "8192", "--pause-after", "20000",
                        "--pause-for", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("reading nothing for 0.5 s after ") and "OK received 300000 bytes" in result.stdout


def test_interactive_reads_requests_until_end_of_input(server):
    result = run_client("--port", str(server.port), "--interactive", stdin="ECHO one\n\nUPPER two\n")
    assert result.returncode == 0
    assert "OK one" in result.stdout and "OK TWO" in result.stdout


def test_step_says_what_goes_on_the_wire_before_each_step(server):
    result = run_client("--port", str(server.port), "--step", "ECHO hi", stdin="\n\n\n")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("next:")]
    assert lines[0].startswith("next: connect to 127.0.0.1:")
    assert "SYN" in lines[0]
    assert lines[1].startswith("next: send b'ECHO hi\\n' (8 bytes")
    assert lines[2].startswith("next: close (FIN")
    assert "OK hi" in result.stdout


def test_udp_messages(server):
    result = run_client("--port", str(server.port), "--udp", "ECHO datagram")
    assert result.returncode == 0
    assert result.stdout == "OK datagram\n"


def test_connection_refused_exits_3():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert_one_line_error(run_client("--port", str(port), "ECHO x"), 3, "connection refused")


def test_no_reply_in_time_exits_4(fake):
    srv = fake("silent")
    result = run_client("--port", str(srv.port), "--timeout", "0.5", "ECHO x")
    assert_one_line_error(result, 4, "no answer")


def test_a_udp_reply_that_never_comes_exits_4():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = run_client("--port", str(port), "--udp", "--timeout", "0.5", "ECHO x")
    assert_one_line_error(result, 4, "UDP does not retransmit")


def test_a_reset_exits_5(fake):
    srv = fake("reset")
    assert_one_line_error(run_client("--port", str(srv.port), "ECHO x"), 5, "reset")


def test_an_unknown_host_exits_6():
    assert_one_line_error(run_client("--host", "no-such-host.invalid", "ECHO x"), 6, "cannot resolve")


def test_a_server_that_breaks_the_protocol_exits_7(fake):
    srv = fake("garbage")
    assert_one_line_error(run_client("--port", str(srv.port), "ECHO x"), 7, "broke the protocol")


@pytest.mark.parametrize("args", [[], ["--port", "0", "ECHO x"], ["--udp", "--bulk", "5"], ["--bulk", "5", "ECHO x"],
                                  ["--split-at", "0", "ECHO x"], ["--flows", "2", "ECHO x"], ["--bulk", "5", "--flows", "9"],
                                  ["--cc", "Reno", "ECHO x"]])
def test_bad_command_lines_exit_2_without_traceback(args):
    result = run_client(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_ctrl_c_in_the_middle_of_a_bulk_stops_at_once_without_reading_the_rest(server):
    proc = subprocess.Popen([sys.executable, "-m", "lab.client", "--port", str(server.port), "--bulk", str(1 << 30)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 130
    server.terminate()
    [line] = [line for line in server.log_lines if "conn proto=tcp" in line]
    assert "close=reset" in line and f"bytes_out={(1 << 30) + 40}" not in line, line


def test_a_slow_download_says_its_rate_in_units_that_show_it():
    from lab.inside.client import rate_words

    assert rate_words(300_000 / 6.171) == "48.6 kB/s, 389 kbit/s"          # was "0.0 MB/s, 0 Mbit/s"
    assert rate_words(500_000) == "0.50 MB/s, 4.0 Mbit/s" and rate_words(2_500_000) == "2.5 MB/s, 20 Mbit/s"
    assert rate_words(110_300_000) == "110.3 MB/s, 882 Mbit/s"
