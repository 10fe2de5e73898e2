"""The lab's core path as a user without root, on rootless Docker and on rootless Podman through
its socket (both started by .ci/rootless-engines as the README's "Without root" says): the base
image made without root, up, send, a delay measured in a capture, the kernel's view, a scenario,
`invoke doctor`, and down leaving nothing."""

from __future__ import annotations

import json

import pytest

from lab.host.engines.product import parse
from lab.inspect import analyze
from tests.helpers import invoke, ok
from tests.rootless import ENGINES, as_user, project_copy

pytestmark = [pytest.mark.docker, pytest.mark.needs("rootless-engines")]


@pytest.fixture(scope="module")
def copy():
    return project_copy()


def lab_task(copy, engine, *args, timeout=900):
    return as_user([".venv/bin/invoke", *args], engine, cwd=copy, timeout=timeout)


def passed(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("engine", list(ENGINES))
def test_the_core_path_runs_without_root(copy, engine):
    lab = f"nlt-{engine}"
    product = parse(as_user(["docker", "version", "--format", "{{json .Server}}"], engine, copy).stdout,
                    as_user(["docker", "info", "--format", "{{json .}}"], engine, copy).stdout)
    assert product.rootless and product.name == ("Podman" if engine == "podman" else "Docker")
    if engine == "rootless-docker":     # the base made without root, every run (Podman's engine keeps its own)
        as_user(["docker", "rmi", "--force", f"tcplab/lab:{lab}", "tcplab/base:bookworm"], engine, copy)
    try:
        up = " ".join(passed(lab_task(copy, engine, "up", "--lab", lab)).split())
        if engine == "rootless-docker":
            assert "mmdebstrap --mode=unshare --variant=minbase bookworm" in up and "image tcplab/lab:" in up
        assert f"engine: {product.words()}" in up
        assert ("are not enforced" in up) == (not product.limits_hold), up
        status = " ".join(passed(lab_task(copy, engine, "status", "--lab", lab)).split())
        assert f"engine: {product.words()}" in status and "IPv6 off" in status
        assert "OK over" in passed(lab_task(copy, engine, "send", "ECHO over", "--lab", lab))
        refused = lab_task(copy, engine, "send", "NOPE", "--lab", lab)      # Podman 4.3 said 0 here
        assert refused.returncode == 1 and "ERR unknown verb" in refused.stdout

        passed(lab_task(copy, engine, "impair", "--delay", "50ms", "--lab", lab))
        passed(lab_task(copy, engine, "capture", "--send", "ECHO slowly", "--kernel", "--name", lab, "--lab", lab))
        [conn] = [c for c in analyze(copy / "captures" / f"{lab}.pcapng").connections if c.server.port == 7070]
        rtt_ms = (conn.handshake.ack_time - conn.handshake.syn_time) / 1e6    # the server's SYN/ACK waits
        assert 50 <= rtt_ms <= 75, rtt_ms
        samples = (copy / "captures" / f"{lab}.kernel.jsonl").read_text().splitlines()
        assert any(json.loads(line).get("cwnd") for line in samples if line.startswith("{")), samples[:3]
        passed(lab_task(copy, engine, "impair", "--clear", "--lab", lab))

        scenario = passed(lab_task(copy, engine, "scenario", "fast-retransmit", "--lab", lab))
        assert "recovered_by_duplicate_acks" in scenario

        doctor = " ".join(passed(lab_task(copy, engine, "doctor", "--lab", lab)).split())
        assert "rootless: yes" in doctor and f"engine: {product.words()}" in doctor
        assert "kernel view: sock_diag answers" in doctor and "link delay:" in doctor
    finally:
        down = lab_task(copy, engine, "down", "--lab", lab)
    passed(down)
    left = as_user(["docker", "ps", "-aq", "--filter", f"label=org.tcplab.lab={lab}"], engine, copy).stdout
    networks = as_user(["docker", "network", "ls", "-q", "--filter", f"label=org.tcplab.lab={lab}"], engine,
                       copy).stdout
    assert not left.strip() and not networks.strip()


@pytest.mark.docker
def test_doctor_on_the_rootful_engine_says_what_the_lab_will_use():
    lab = "nlt-doctor"
    try:
        ok(invoke("build", "--lab", lab))
        said = " ".join(ok(invoke("doctor", "--lab", lab)).split())
    finally:
        invoke("clean", "--lab", lab)
    assert "rootless: no" in said and "limits: --memory and --pids-limit are enforced" in said
    assert "kernel view: sock_diag answers" in said and "subnets:" in said
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:   # the engine is this machine's
        assert f"the kernel has {', '.join(f.read().split())}" in said
