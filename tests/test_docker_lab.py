"""The lab on a real Docker engine, driven through `invoke` as a user drives it."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import docker_json, invoke, labelled, ok

pytestmark = pytest.mark.docker

A, B = "nlt-a", "nlt-b"


@pytest.fixture(scope="module")
def images():
    """The test labs' images, built once (the first build may bootstrap the base)."""
    for lab in (A, B):
        ok(invoke("build", "--lab", lab))


@pytest.fixture
def lab_a(images):
    invoke("down", "--lab", A)       # whatever an earlier run left behind
    yield A
    invoke("down", "--lab", A)


@pytest.fixture
def lab_b(images):
    invoke("down", "--lab", B)
    yield B
    invoke("down", "--lab", B)


def test_up_send_status_down(lab_a):
    out = ok(invoke("up", "--lab", A))
    assert "docker network create" in out and "docker run" in out  # commands are echoed
    assert "is up" in out
    out = ok(invoke("send", "ECHO across the lab network", "--next", "UPPER dns works", "--lab", A))
    assert "OK across the lab network\nOK DNS WORKS\n" in out
    status = ok(invoke("status", "--lab", A))
    for word in ("nlt-a-server", "nlt-a-client", "server", "client", "running", "7070/tcp", "internal"):
        assert word in status
    ok(invoke("down", "--lab", A))
    assert labelled("network", A) == []
    assert [c for c in labelled("container", A) if c] == []


def test_the_network_is_internal_with_a_subnet_outside_dockers_default_pools(lab_a):
    ok(invoke("up", "--lab", A))
    [net] = docker_json("network", "inspect", f"{A}-net")
    assert net["Internal"] is True
    subnet = ipaddress.ip_network(net["IPAM"]["Config"][0]["Subnet"])
    for pool in ("172.17.0.0/16", "172.16.0.0/12", "192.168.0.0/16"):
        assert not subnet.overlaps(ipaddress.ip_network(pool))
    for role, host in (("server", 2), ("client", 3)):          # fixed: captures read the same every time
        [container] = docker_json("inspect", f"{A}-{role}")
        assert container["NetworkSettings"]["Networks"][f"{A}-net"]["IPAddress"] == str(subnet[host])


def test_up_twice_and_down_twice_are_no_ops(lab_a):
    ok(invoke("up", "--lab", A))
    first = sorted(c["Id"] for c in docker_json("inspect", f"{A}-server", f"{A}-client"))
    ok(invoke("up", "--lab", A))
    second = sorted(c["Id"] for c in docker_json("inspect", f"{A}-server", f"{A}-client"))
    assert first == second
    ok(invoke("down", "--lab", A))
    assert "already down" in ok(invoke("down", "--lab", A))


def test_a_foreign_container_named_like_ours_survives_down_and_blocks_up(lab_a):
    # Started by hand from our own image: it inherits the image's labels, yet is not ours.
    subprocess.run(["docker", "run", "-d", "--name", f"{A}-server", f"tcplab/lab:{A}", "sleep", "300"],
                   check=True, capture_output=True)
    try:
        result = invoke("up", "--lab", A)
        assert result.returncode == 1
        assert "was not made by lab 'nlt-a'" in result.stderr
        assert "Traceback" not in result.stderr
        ok(invoke("down", "--lab", A))
        [survivor] = docker_json("inspect", f"{A}-server")
        assert survivor["State"]["Running"]
    finally:
        subprocess.run(["docker", "rm", "-f", f"{A}-server"], capture_output=True)


def test_a_foreign_network_named_like_ours_is_left_alone(lab_a):
    subprocess.run(["docker", "network", "create", "--internal", f"{A}-net"], check=True, capture_output=True)
    try:
        result = invoke("up", "--lab", A)
        assert result.returncode == 1 and "a network named 'nlt-a-net'" in result.stderr
        ok(invoke("down", "--lab", A))
        assert docker_json("network", "inspect", f"{A}-net")
    finally:
        subprocess.run(["docker", "network", "rm", f"{A}-net"], capture_output=True)


def test_two_labs_run_side_by_side(lab_a, lab_b):
    ok(invoke("up", "--lab", A))
    ok(invoke("up", "--lab", B))
    assert "OK A" in ok(invoke("send", "ECHO A", "--lab", A))
    assert "OK B" in ok(invoke("send", "ECHO B", "--lab", B))
    subnets = {docker_json("network", "inspect", f"{lab}-net")[0]["IPAM"]["Config"][0]["Subnet"] for lab in (A, B)}
    assert len(subnets) == 2
    ok(invoke("down", "--lab", A))
    assert "OK still" in ok(invoke("send", "ECHO still", "--lab", B))


def test_the_lab_name_can_come_from_the_environment(lab_b):
    out = ok(invoke("up", env={"INVOKE_LAB_NAME": B}))
    assert f"lab '{B}' is up" in out


def test_server_and_client_containers_are_hardened(lab_a):
    ok(invoke("up", "--lab", A))
    for container in docker_json("inspect", f"{A}-server", f"{A}-client"):
        host = container["HostConfig"]
        assert container["Config"]["User"] == "lab"
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["ReadonlyRootfs"] is True
        assert host["Memory"] == 256 * 1024 * 1024 and host["PidsLimit"] == 128
        assert host["Privileged"] is False and host["NetworkMode"] != "host"
    top = subprocess.run(["docker", "exec", f"{A}-server", "id", "-u"], capture_output=True, text=True)
    assert top.stdout.strip() != "0"


def test_send_reports_err_replies_with_a_nonzero_exit(lab_a):
    ok(invoke("up", "--lab", A))
    result = invoke("send", "NOPE", "--lab", A)
    assert result.returncode == 1 and "ERR unknown verb 'NOPE'" in result.stdout


def test_send_when_the_lab_is_down_is_one_line(images):
    result = invoke("send", "ECHO x", "--lab", "nlt-never-up")
    assert result.returncode == 1
    assert result.stderr.strip() == "lab 'nlt-never-up' is not up: run 'invoke up --lab nlt-never-up' first"


def test_logs_show_one_line_per_connection(lab_a):
    ok(invoke("up", "--lab", A))
    ok(invoke("send", "ECHO logged", "--lab", A))
    result = invoke("logs", "--lab", A)
    out = ok(result) + result.stderr  # docker logs keeps the server's stderr as stderr
    assert "conn proto=tcp" in out and "close=client" in out
    client_log = ok(invoke("logs", "--role", "client", "--lab", A))
    assert "the client host runs no program of its own" in client_log      # not an empty answer


def test_up_sets_the_congestion_control_and_turns_ipv6_off(lab_b):
    ok(invoke("up", "--cc", "reno", "--lab", B))
    for container in (f"{B}-server", f"{B}-client"):
        settings = subprocess.run(["docker", "exec", container, "cat", "/proc/sys/net/ipv4/tcp_congestion_control",
                                   "/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"],
                                  capture_output=True, text=True)
        assert settings.stdout.split() == ["reno", "1", "1"], container
        addresses = subprocess.run(["docker", "exec", container, "ip", "-6", "addr"], capture_output=True, text=True)
        assert "inet6" not in addresses.stdout, addresses.stdout
    assert "TCP congestion control: reno; IPv6 off" in ok(invoke("status", "--lab", B))
    allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
    another = next(name for name in allowed if name != "reno")      # one a container may use
    other = invoke("up", "--cc", another, "--lab", B)
    assert other.returncode == 1 and "is up with congestion control reno: run 'invoke down --lab nlt-b' first" in other.stderr


def test_a_lab_running_an_older_image_starts_again_from_the_new_one_and_keeps_its_algorithm(lab_a, tmp_path):
    """The image is rebuilt after the code changes; a server still running the old image answered
    the new CC request "unknown verb". `up` starts it again, with the congestion control it had."""
    ok(invoke("up", "--lab", A, "--cc", "reno"))
    (tmp_path / "Dockerfile").write_text(f"FROM tcplab/lab:{A}\nLABEL org.tcplab.test=newer\n")
    subprocess.run(["docker", "build", "-q", "-t", f"tcplab/lab:{A}", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    out = ok(invoke("up", "--lab", A))
    assert f"{A}-server, {A}-client ran an older image of the lab or lacked its names in /etc/hosts: starting them again" in out
    server = docker_json("inspect", f"{A}-server")[0]
    assert server["Config"]["Labels"].get("org.tcplab.test") == "newer"
    algorithm = subprocess.run(["docker", "exec", f"{A}-server", "cat", "/proc/sys/net/ipv4/tcp_congestion_control"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    assert algorithm == "reno"
    again = ok(invoke("up", "--lab", A))
    assert "older image" not in again                                  # once current, left alone
    assert "OK reno" in ok(invoke("send", "CC reno", "--lab", A))


def in_namespace_of(container: str, script: str) -> subprocess.CompletedProcess:
    """A root helper with NET_ADMIN in a lab container's network namespace (as the lab's own helpers run)."""
    return subprocess.run(["docker", "run", "--rm", "--network", f"container:{container}", "--user", "0",
                           "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", f"tcplab/lab:{A}", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


def test_the_lab_finds_its_names_without_the_engines_resolver_and_forwards_no_other_name(lab_a):
    """After `docker swarm init` and `leave` on the engine every lab stopped resolving `server`
    (send exit 6, an empty capture saved as if it worked); and the embedded resolver passed names it
    did not know to the host's DNS server, out of the --internal network."""
    ok(invoke("up", "--lab", A))
    [net] = docker_json("network", "inspect", f"{A}-net")
    subnet = ipaddress.ip_network(net["IPAM"]["Config"][0]["Subnet"])
    hosts = subprocess.run(["docker", "exec", f"{A}-client", "cat", "/etc/hosts"], capture_output=True,
                           text=True).stdout
    assert f"{subnet[2]}\tserver" in hosts and f"{subnet[3]}\tclient" in hosts, hosts
    # The engine's resolver disturbed: every DNS packet from the client's namespace dropped.
    drop = "iptables -I OUTPUT -p udp --dport 53 -j DROP && iptables -I OUTPUT -p tcp --dport 53 -j DROP"
    assert in_namespace_of(f"{A}-client", drop).returncode == 0
    out = ok(invoke("send", "ECHO named anyway", "--lab", A))
    assert "OK named anyway" in out
    assert "cannot resolve" not in ok(invoke("status", "--lab", A))
    # A name the lab does not know goes nowhere: --dns points at the namespace's own loopback.
    [client] = docker_json("container", "inspect", f"{A}-client")
    assert client["HostConfig"]["Dns"] == ["127.0.0.1"]
    unknown = subprocess.run(["docker", "exec", f"{A}-client", "getent", "hosts", "tcplab-probe.example.com"],
                             capture_output=True, text=True, timeout=30)
    assert unknown.returncode != 0 and not unknown.stdout


def test_a_client_that_cannot_reach_the_server_leaves_no_capture_that_looks_good(lab_a, tmp_path):
    ok(invoke("up", "--lab", A))
    assert in_namespace_of(f"{A}-client", "iptables -I OUTPUT -p tcp --dport 7070 -j REJECT "
                                          "--reject-with tcp-reset").returncode == 0
    result = invoke("capture", "--send", "ECHO nobody hears", "--name", "nlt-unheard", "--lab", A,
                    env={"TCPLAB_CAPTURES": str(tmp_path)})
    assert result.returncode != 0 and "no capture is kept" in result.stderr, result.stdout + result.stderr
    assert not list(tmp_path.glob("nlt-unheard*"))


def on_a_terminal(argv: list[str], columns: int = 80, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """What ``argv`` shows on a terminal ``columns`` wide (a pseudo-terminal of that size), colours removed."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import sys
    import termios
    import time

    from tests.helpers import ROOT

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "invoke", *argv], cwd=ROOT, stdin=follower, stdout=follower,
                            stderr=follower, env={**os.environ, "TERM": "xterm", **(env or {})})
    os.close(follower)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:            # the terminal's other end closed: the program ended
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(leader)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    text = out.decode(errors="replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_the_demo_reads_at_80_columns_as_a_learner_sees_it(lab_a):
    """The demo on an 80-column terminal: every line fits; the narration wraps between words; each docker
    command is one line (whole in logs/commands.log). In the project's own captures/, as a learner runs it
    (a path longer than the terminal, such as a test's temporary folder, cannot fit whole); its files are
    removed after."""
    from lab.paths import CAPTURES_DIR

    before = set(CAPTURES_DIR.glob("demo-*")) if CAPTURES_DIR.exists() else set()
    try:
        text = on_a_terminal(["demo", "--lab", A])
    finally:
        for made in set(CAPTURES_DIR.glob("demo-*")) - before:
            made.unlink()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    commands = [line for line in lines if line.startswith("docker ")]
    assert commands and all(len(line) <= 80 for line in commands)
    assert "(each command whole: logs/commands.log, or --verbose)" in text or all(len(c) < 80 for c in commands)
    flat = " ".join(text.split())
    for phrase in ("captures show wire-sized segments", "the server answers at server:7070", "TCP conversations",
                   "lab nlt-a", "TCP congestion control"):
        assert phrase in flat, phrase
