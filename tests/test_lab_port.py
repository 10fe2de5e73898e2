"""A lab on another port: its captures are studied by what they carry, not by the number 7070.

The captures here are the bundled ones with every 7070 rewritten to 7171 (checksums made
again), as a lab configured with ``port: 7171`` would have made them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.inspect.lab_port import is_request, port_of_connections, server_port
from lab.teach import notebook
from lab.teach.dynamics import DYNAMICS_QUESTIONS, Dynamics
from lab.teach.exercises import QUESTIONS, Exercises

DATA = Path(__file__).resolve().parent.parent / "notebooks" / "data"
OTHER = 7171
PORT_QUESTIONS = {"server_address"}       # ip:port: the port is what moved


def moved(name: str, folder: Path) -> Path:
    """The bundled capture ``name`` (and its kernel samples) as a lab on port 7171 would have made it."""
    from scapy.all import TCP, UDP, PcapWriter, rdpcap

    packets = rdpcap(str(DATA / name))
    for packet in packets:
        for layer in (TCP, UDP):
            if layer in packet:
                for field in ("sport", "dport"):
                    if getattr(packet[layer], field) == 7070:
                        setattr(packet[layer], field, OTHER)
                del packet[layer].chksum
    path = folder / name.replace(".pcapng", ".pcap")
    with PcapWriter(str(path), linktype=1, sync=True) as writer:
        for packet in packets:
            rebuilt = packet.__class__(bytes(packet))            # checksums computed again
            rebuilt.time, rebuilt.wirelen = packet.time, packet.wirelen or len(packet)
            writer.write(rebuilt)
    kernel = DATA / name.replace(".pcapng", ".kernel.jsonl")
    if kernel.exists():
        rows = [json.loads(line) for line in kernel.read_text().splitlines()]
        for row in rows:
            for key in ("local", "remote"):
                row[key] = row[key].replace(":7070", f":{OTHER}")
        path.with_name(path.stem + ".kernel.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_request_is_told_by_its_verb():
    assert is_request(b"ECHO hello\n") and is_request(b"TIME\n") and is_request(b"BULK 300000 [t]")
    assert not is_request(b"TIMEOUT") and not is_request(b"GET / HTTP/1.1") and not is_request(b"")


@pytest.mark.parametrize("name, transport", [("exchange.pcapng", "tcp"), ("udp.pcapng", "udp"),
                                             ("tail-loss-probe.pcapng", "tcp")])
def test_the_servers_port_comes_from_the_capture(name, transport, tmp_path):
    assert server_port(DATA / name) == 7070
    assert server_port(moved(name, tmp_path)) == OTHER


def test_exercises_on_a_lab_on_another_port_have_the_same_answers(tmp_path):
    original, other = Exercises(DATA / "exchange.pcapng"), Exercises(moved("exchange.pcapng", tmp_path))
    assert other.conn.server.port == OTHER and other.port == OTHER
    assert other.reveal("server_address") == original.reveal("server_address").replace(":7070", f":{OTHER}")
    for name in set(QUESTIONS) - PORT_QUESTIONS:
        try:
            expected = original.reveal(name)
        except Exception:          # a question about another kind of capture (bulk, UDP)
            continue
        seen = other.reveal(name)
        if isinstance(expected, (float, list)):          # a pcap keeps microseconds: RTTs may move by one
            assert seen == pytest.approx(expected, abs=0.002), name
        else:
            assert seen == expected, name


def test_the_kernel_questions_follow_the_lab_to_another_port(tmp_path):
    original = Dynamics(DATA / "tail-loss-probe.pcapng", bulk=False)
    other = Dynamics(moved("tail-loss-probe.pcapng", tmp_path), bulk=False)
    assert other.sender and other.tail_cause() == "probe"
    for name in ("tail_retransmission_ms", "tail_mechanism", "rto_before_it_ms"):
        assert other.reveal(name) == original.reveal(name)
    assert set(DYNAMICS_QUESTIONS) >= {"tail_mechanism"}


def test_the_notebooks_take_a_capture_of_a_lab_on_another_port(tmp_path, monkeypatch):
    exchange, udp = moved("exchange.pcapng", tmp_path), moved("udp.pcapng", tmp_path)
    assert notebook.capture_path(str(exchange), "exchange.pcapng") == exchange
    assert notebook.capture_path(str(udp), "udp.pcapng") == udp
    assert notebook.addresses(exchange) == notebook.addresses(DATA / "exchange.pcapng")


def test_an_analysed_capture_names_its_lab_port_too(tmp_path):
    from lab.inspect.analysis import analyze

    assert port_of_connections(analyze(moved("exchange.pcapng", tmp_path), keep=True).connections) == OTHER


@pytest.mark.parametrize("number, parameters", [
    ("01", {"pcap": "exchange.pcapng"}),
    ("06", {"pcap": "udp.pcapng"}),
    ("08", {"syn_pcap": "syn-loss.pcapng", "tail_pcap": "tail-loss-probe.pcapng", "rto_pcap": "tail-loss-rto.pcapng",
            "window_pcap": "zero-window.pcapng"}),
])
@pytest.mark.slow          # it runs a notebook
def test_a_notebook_runs_on_the_capture_of_a_lab_on_another_port(number, parameters, tmp_path):
    from nbclient import NotebookClient

    from tests.test_notebooks import NOTEBOOKS, text_of, with_parameters

    path = next(p for p in NOTEBOOKS if p.name.startswith(number))
    made = {key: str(moved(name, tmp_path)) for key, name in parameters.items()}
    book = with_parameters(path, **made)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    out = text_of(book)
    assert "Traceback" not in out and "cannot study that capture" not in out
    assert all(f"studying {notebook.shown(Path(file))}" in out for file in made.values())


@pytest.mark.docker
def test_a_real_lab_on_another_port_is_studied_by_the_notebook_and_its_exercises(tmp_path):
    """Not a rewritten capture: a lab configured with port 7171 (INVOKE_LAB_PORT), its own capture,
    notebook 01 run on it, and the exercises' connection the one to 7171."""
    from nbclient import NotebookClient

    from lab.paths import CAPTURES_DIR
    from tests.helpers import invoke, ok
    from tests.test_notebooks import NOTEBOOKS, text_of, with_parameters

    lab, env = "nlt-port", {"INVOKE_LAB_PORT": str(OTHER)}
    capture = CAPTURES_DIR / "nlt-port-exchange.pcapng"
    try:
        assert f"server:{OTHER}" in ok(invoke("up", "--lab", lab, env=env))
        ok(invoke("capture", "--send", "ECHO on another port", "--send", "TIME", "--name", capture.stem,
                  "--lab", lab, env=env))
        assert server_port(capture) == OTHER and Exercises(capture).conn.server.port == OTHER
        book = with_parameters(NOTEBOOKS[0], pcap=capture)
        NotebookClient(book, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS[0].parent)}}).execute()
        out = text_of(book)
        assert f"studying {notebook.shown(capture)}" in out and "Traceback" not in out
    finally:
        invoke("down", "--lab", lab, env=env)
        capture.unlink(missing_ok=True)
