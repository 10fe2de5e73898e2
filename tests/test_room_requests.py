"""What a room's broker accepts from a student, and what it refuses, in one line each: checked on a
real broker on loopback (no Docker needed for a refusal: nothing runs), and its list of tasks and
options held to tasks.py's own."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
from pathlib import Path

import pytest

import tasks
from lab.host.room import requests, tokens
from lab.host.room.broker import Broker
from lab.host.room.requests import Refused, words_of

KEY = b"k" * 32


def test_every_task_and_option_the_broker_runs_is_one_tasks_py_has():
    for name, options in requests.TASKS.items():
        task = getattr(tasks, name)
        assert task.on_engine, f"{name} acts on the lab: in a room it must go to the broker"
        parameters = set(inspect.signature(task.body).parameters) - {"c"}
        assert set(options) <= parameters, (name, set(options) - parameters)
        assert "lab" not in options
    engine_tasks = {name for name in tasks.ns.task_names if getattr(tasks.ns[name], "on_engine", False)}
    assert engine_tasks - set(requests.TASKS) == {"build", "clean"}        # the room builds; students do not


def test_options_become_words_a_value_cannot_turn_into_a_flag():
    assert words_of("capture", {"send": ["ECHO hi", "TIME"], "kernel": True, "seconds": None}) == \
        ["capture", "--send=ECHO hi", "--send=TIME", "--kernel"]
    assert words_of("send", {"message": "--lab=bob", "udp": False}) == ["send", "--message=--lab=bob"]
    assert words_of("capture", {"all_frames": True}) == ["capture", "--all-frames"]


@pytest.mark.parametrize("task, options, said", [
    ("build", {}, "does not run 'build'"),
    ("status", {"lab": "class-bob"}, "leave out --lab"),
    ("capture", {"underlay": True}, "no option 'underlay'"),
    ("scenario", {"name": "../../etc/passwd"}, "the bundled ones"),
    ("scenario", {"name": "/srv/room/x.toml"}, "the bundled ones"),
    ("send", {"message": "ECHO a\nDOWN"}, "one line"),
    ("send", {"message": "x" * 400}, "at most 300"),
    ("capture", {"send": ["ECHO"] * 21}, "at most 20 times"),
    ("capture", {"kernel": "yes"}, "takes no value"),
    ("send", {"message": {"a": 1}}, "takes text"),
])
def test_what_a_student_may_not_ask_is_refused_in_one_line(task, options, said):
    with pytest.raises(Refused, match=said) as refused:
        words_of(task, options)
    assert "\n" not in str(refused.value)


def test_the_client_lines_a_notebook_runs_are_the_only_ones_the_broker_runs():
    assert requests.check_ask("in-client", {"script": "ss -tan"}) == {"script": "ss -tan"}
    assert requests.check_ask("in-client", {"script": "echo 'ECHO see you' | nc -N server 7070"})
    for script in ("ss -tan; rm -rf /tmp", "nc 172.17.0.1 22", "echo 'ECHO x' | nc -N server 7070 && id"):
        with pytest.raises(Refused):
            requests.check_ask("in-client", {"script": script})


def test_a_token_names_one_student_and_nothing_else_makes_one():
    alice = tokens.token_for(KEY, "alice")
    assert tokens.student_of(KEY, alice) == "alice"
    assert tokens.student_of(KEY, "bob:" + alice.split(":")[1]) is None
    assert tokens.student_of(b"x" * 32, alice) is None
    for junk in (None, 3, "", "alice", "a" * 400, ["alice"]):
        assert tokens.student_of(KEY, junk) is None


@pytest.fixture
def broker(tmp_path):
    """A real broker on a loopback port, in a thread; refusals run nothing, so no Docker is needed."""
    made = Broker("r", KEY, {"alice": "r-alice", "bob": "r-bob"}, tmp_path / "data", None, Path("/nonexistent"))
    made.data.mkdir(parents=True)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(made.handle, "127.0.0.1", 0,
                                                          limit=requests.MAX_REQUEST_BYTES + 2))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield made, server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def ask_broker(port: int, request: dict | bytes) -> list[dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n")
        return [json.loads(line) for line in connection.makefile("rb")]


def test_the_broker_refuses_unknown_tokens_long_requests_and_a_student_over_their_rate(broker):
    made, port = broker
    alice = tokens.token_for(KEY, "alice")
    assert "does not know this token" in ask_broker(port, {"token": "alice:00", "task": "status"})[0]["refused"]
    assert "does not know this token" in ask_broker(port, {"token": tokens.token_for(KEY, "mallory"),
                                                           "task": "status"})[0]["refused"]
    assert ask_broker(port, b"{" + b" " * (requests.MAX_REQUEST_BYTES + 10) + b"}\n")[0]["refused"]
    assert ask_broker(port, b"not json\n")[0]["refused"] == "not a request the room understands"
    for _ in range(requests.REQUESTS_PER_MINUTE):
        assert "leave out --lab" in ask_broker(port, {"token": alice, "task": "status",
                                                      "options": {"lab": "r-bob"}})[0]["refused"]
    over = ask_broker(port, {"token": alice, "task": "status"})[0]["refused"]
    assert f"{requests.REQUESTS_PER_MINUTE} requests a minute" in over
    bob = ask_broker(port, {"token": tokens.token_for(KEY, "bob"), "task": "nope"})[0]["refused"]
    assert "does not run 'nope'" in bob                                  # one student's rate is not another's
    log = [json.loads(line) for line in (made.data / "broker.log").read_text().splitlines()]
    assert len(log) == 4 + requests.REQUESTS_PER_MINUTE + 2
    assert {entry["student"] for entry in log} == {None, "alice", "bob"}
    assert all(entry["outcome"].startswith(("refused", "bad request")) for entry in log)


def test_a_path_the_broker_prints_is_the_students_own_even_cut_between_two_reads():
    from lab.host.room.broker import _start_of

    folder = "/srv/room/students/r-alice/captures/"
    assert _start_of(folder, "*** /srv/room/stu") == len("/srv/room/stu")
    assert _start_of(folder, "ready\n") == 0
    assert _start_of(folder, "a /") == 1
