"""Bad input to any task is one line and exit 1, never a traceback (no Docker engine needed)."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import invoke


@pytest.mark.parametrize("args, message", [
    (["notebook", "--port", "notaport"], "--port takes a whole number, got 'notaport'"),
    (["inspect", "--ladders", "x"], "--ladders takes a whole number, got 'x'"),
    (["logs", "--tail", "many", "--lab", "nlt-never-up"], "--tail takes a whole number, got 'many'"),
    (["impair", "--target", "bogus", "--loss", "5", "--lab", "nlt-never-up"], "--target must be server or client, got 'bogus'"),
    (["impair", "--jitter", "5", "--lab", "nlt-never-up"], "give --delay too"),
    (["capture", "--engine", "wireshark", "--lab", "nlt-never-up"], "--engine must be one of lab, tcpdump"),
    (["capture", "--send", "ECHO x", "--bulk", "5", "--lab", "nlt-never-up"], "--send and --bulk cannot be combined"),
    (["capture", "--count", "-3", "--lab", "nlt-never-up"], "--count must be more than 0, got -3"),
    (["bulk", "lots", "--lab", "nlt-never-up"], "NBYTES takes a whole number, got 'lots'"),
    (["inspect", "--pcap", "/nonexistent.pcap"], "no such file: /nonexistent.pcap"),
])
def test_bad_input_is_one_line(args, message):
    result = invoke(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


@pytest.mark.needs("docker")
def test_an_engine_that_does_not_answer_is_one_line():
    result = invoke("status", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert "Docker engine is not running" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_docker_command_is_one_line(tmp_path):
    for tool in ("bash", "sh"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    result = invoke("status", env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "docker command is not installed" in result.stderr
