"""What the lab guarantees against an unlucky or hostile user, on a real Docker engine.

The host is out of reach from a lab; orphaned processes are reaped; logs are
capped; an image built from ours survives `clean`; a capture interrupted at any
moment leaves a valid file or nothing, and never a container; a killed engine
is said; an orphan of `kill -9` is cleaned up by the next capture and by `down`;
Ctrl-C stops a slow BULK at once.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from lab.inspect import analyze
from lab.paths import CAPTURES_DIR
from tests.helpers import ROOT, BackgroundCapture, docker_json, invoke, labelled, ok

pytestmark = pytest.mark.docker

LAB = "nlt-safe"
SERVER, CLIENT, ENGINE = f"{LAB}-server", f"{LAB}-client", f"{LAB}-capture"


@pytest.fixture(scope="module")
def lab():
    ok(invoke("up", "--lab", LAB))
    yield LAB
    invoke("down", "--lab", LAB)


def gateway() -> str:
    [net] = docker_json("network", "inspect", f"{LAB}-net")
    return net["IPAM"]["Config"][0]["Gateway"]


def reaches(container_args: list[str], host: str, port: int) -> bool:
    result = subprocess.run(["docker", *container_args, "nc", "-z", "-w", "2", host, str(port)],
                            capture_output=True, timeout=60)
    return result.returncode == 0


def test_the_host_is_out_of_reach_from_the_lab_which_still_works(lab):
    host = gateway()
    with socket.socket() as listener:          # a listener of this test's own, on the lab's gateway address
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen()
        port = listener.getsockname()[1]
        # Control: a container on the lab network that the lab did not prepare reaches it.
        assert reaches(["run", "--rm", "--network", f"{LAB}-net", f"tcplab/lab:{LAB}"], host, port)
        for container in (SERVER, CLIENT):
            assert not reaches(["exec", container], host, port), f"{container} reached the host"
    for container in (SERVER, CLIENT):
        routes = subprocess.run(["docker", "exec", container, "ip", "route"], capture_output=True, text=True).stdout
        assert "default" not in routes
    assert "OK still here" in ok(invoke("send", "ECHO still here", "--lab", lab))


def test_orphaned_processes_are_reaped_and_status_says_when_a_container_cannot_fork(lab):
    subprocess.run(["docker", "exec", SERVER, "sh", "-c", "for i in $(seq 30); do (sleep 0.2 &); done"], check=True)
    time.sleep(1.5)
    states = subprocess.run(["docker", "exec", SERVER, "ps", "-eo", "stat="], capture_output=True, text=True).stdout
    assert "Z" not in states, states
    filler = subprocess.Popen(["docker", "exec", CLIENT, "sh", "-c", "for i in $(seq 200); do sleep 60 & done; wait"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        assert "cannot fork" in ok(invoke("status", "--lab", lab))
    finally:
        filler.kill()
        subprocess.run(["docker", "restart", "-t", "1", CLIENT], capture_output=True)
        ok(invoke("up", "--lab", lab))


def test_the_long_lived_containers_logs_are_capped(lab):
    for container in (SERVER, CLIENT):
        [obj] = docker_json("inspect", container)
        assert obj["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "1m"}}


def test_a_volume_named_like_a_lab_container_is_not_in_its_way():
    other = "nlt-vol"
    subprocess.run(["docker", "volume", "create", f"{other}-server"], check=True, capture_output=True)
    try:
        ok(invoke("up", "--lab", other))
        assert "OK beside a volume" in ok(invoke("send", "ECHO beside a volume", "--lab", other))
    finally:
        invoke("down", "--lab", other)
        subprocess.run(["docker", "volume", "rm", f"{other}-server"], capture_output=True)


def test_an_image_built_from_ours_survives_clean():
    lab = "nlt-clean"
    ok(invoke("build", "--lab", lab))
    derived = "nlt-derived:latest"
    subprocess.run(["docker", "build", "-t", derived, "-"], input=f"FROM tcplab/lab:{lab}\nLABEL mine=yes\n",
                   text=True, check=True, capture_output=True)
    try:
        ok(invoke("clean", "--lab", lab))
        assert docker_json("image", "inspect", derived), "clean removed an image that is not the lab's"
        assert not docker_json("image", "inspect", f"tcplab/lab:{lab}")
    finally:
        subprocess.run(["docker", "rmi", "-f", derived], capture_output=True)


def no_engine_left() -> bool:
    return not subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{ENGINE}$"],
                              capture_output=True, text=True).stdout.strip()


def test_ctrl_c_at_any_moment_leaves_a_valid_file_or_nothing_and_no_container(lab, name):
    rng = random.Random(20261201)
    for run in range(8):
        stem = f"{name}-{run}"
        capture = BackgroundCapture(LAB, "--seconds", "3", "--name", stem)
        time.sleep(rng.uniform(0.3, 1.8))      # from when invoke runs our code (Python starts in ~0.2 s)
        capture.proc.send_signal(signal.SIGINT)
        code, out = capture.finish()
        files = sorted(p.name for p in CAPTURES_DIR.glob(f"*{stem}*"))
        assert "Traceback" not in out, out
        assert files in ([], [f"{stem}.pcapng"]), (run, files, out)
        if files:
            assert code == 0 and analyze(CAPTURES_DIR / files[0]).error is None, out
        else:   # interrupted before the engine captured: said, in one line (early: before any docker command)
            # 130, or killed by the SIGINT itself (-2) when it lands in Python's own shutdown: a shell shows 130
            assert code in (130, -signal.SIGINT), (code, out)
            assert "nothing was saved" in out or out.strip().splitlines()[-1] == "interrupted", out
        assert no_engine_left(), f"run {run} left {ENGINE}: {out}"


def test_a_killed_engine_is_said_and_its_file_is_valid(lab, name):
    capture = BackgroundCapture(LAB, "--name", name)
    capture.wait_for("capturing on")
    ok(invoke("send", "ECHO before the kill", "--lab", lab))
    time.sleep(0.3)
    subprocess.run(["docker", "kill", ENGINE], check=True, capture_output=True)
    code, out = capture.finish()
    assert code == 1 and "the capture engine died" in out and "Traceback" not in out, out
    assert analyze(CAPTURES_DIR / f"{name}.pcapng").frames > 0


def kill_minus_9_mid_capture(name: str, *options: str) -> None:
    capture = BackgroundCapture(LAB, "--name", name, *options)
    capture.wait_for("capturing on")
    capture.proc.kill()
    capture.proc.wait()
    assert not no_engine_left(), "the engine should outlive its killed invoke (the orphan to clean up)"


def test_the_orphan_of_a_killed_capture_is_removed_by_the_next_capture(lab, name):
    kill_minus_9_mid_capture(name, "--kernel")
    assert list(CAPTURES_DIR.glob(f".{name}.*.pcap.part")) and list(CAPTURES_DIR.glob(f".{name}.*.kernel.part"))
    assert labelled("container", LAB, role="sampler")                   # the samplers outlive it too
    out = ok(invoke("capture", "--count", "2", "--seconds", "5", "--name", f"{name}-next", "--lab", lab))
    assert "removed the container of a capture whose invoke was killed" in out
    assert not list(CAPTURES_DIR.glob(f".{name}.*")) and not labelled("container", LAB, role="sampler")


@pytest.mark.parametrize("captured_mb", [0.1, 20])
def test_a_killed_bulk_capture_is_recovered_whatever_became_of_its_containers(lab, name, captured_mb):
    """`kill -9` 2.5-4 s into a 100 MB capture left a 106 MB partial file for good: cleanup found it
    through the engine's container, which had removed itself. Now the file says whose it is."""
    capture = BackgroundCapture(LAB, "--name", name, "--bulk", "100000000", "--kernel")
    capture.wait_for("capturing on")
    deadline = time.monotonic() + 30
    while sum(part.stat().st_size for part in CAPTURES_DIR.glob(f".{name}.*.pcap.part")) < captured_mb * 1e6:
        assert time.monotonic() < deadline and capture.proc.poll() is None, "".join(capture.lines)
        time.sleep(0.005)
    capture.proc.kill()
    capture.proc.wait()
    subprocess.run(["docker", "rm", "--force", ENGINE, f"{LAB}-sampler-server", f"{LAB}-sampler-client"],
                   capture_output=True)                                 # as if each had removed itself
    time.sleep(0.5)
    [part] = CAPTURES_DIR.glob(f".{name}.*.pcap.part")
    assert list(CAPTURES_DIR.glob(f".{name}.*.kernel.part"))
    out = ok(invoke("capture", "--count", "2", "--seconds", "5", "--name", f"{name}-next", "--lab", lab))
    recovered = CAPTURES_DIR / f"{name}.recovered.pcap"
    packets = int(re.search(r"recovered (\d+) packets of a capture whose invoke was killed: " + re.escape(recovered.name),
                            out)[1])
    assert not list(CAPTURES_DIR.glob(f".{name}.*"))                   # no working file left
    assert analyze(recovered).frames == packets > 0                     # whole records only: a valid pcap


def test_down_removes_the_orphan_of_a_killed_capture_and_its_partial_file(name):
    other = "nlt-orphan"
    ok(invoke("up", "--lab", other))
    try:
        capture = subprocess.Popen([sys.executable, "-m", "invoke", "capture", "--kernel", "--name", name, "--lab", other],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in capture.stdout:
            if "capturing on" in line:
                break
        capture.kill()
        capture.wait()
        assert list(CAPTURES_DIR.glob(f".{name}.*.pcap.part"))
    finally:
        ok(invoke("down", "--lab", other))
    assert labelled("container", other) == []
    assert not list(CAPTURES_DIR.glob(f".{name}.*"))


def test_a_capture_that_runs_is_not_mistaken_for_an_orphan(lab, name):
    capture = BackgroundCapture(LAB, "--name", name)
    capture.wait_for("capturing on")
    try:
        second = invoke("capture", "--count", "1", "--name", f"{name}-2", "--lab", lab)
        assert second.returncode == 1 and "a capture is already running" in second.stderr
    finally:
        capture.proc.send_signal(signal.SIGINT)
        assert capture.finish()[0] == 0


def test_ctrl_c_stops_a_rate_limited_bulk_at_once(lab, name):
    ok(invoke("impair", "--rate", "20mbit", "--lab", lab))
    try:
        capture = BackgroundCapture(LAB, "--bulk", "100000000", "--name", name)
        capture.wait_for("capturing on")
        time.sleep(1.5)
        capture.proc.send_signal(signal.SIGINT)
        code, out = capture.finish(timeout=30)
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))
    assert "interrupted:" in out and (CAPTURES_DIR / f"{name}.pcapng").exists(), out
    log = subprocess.run(["docker", "logs", "--tail", "5", SERVER], capture_output=True, text=True).stderr
    bulk = [line for line in log.splitlines() if "bytes_in=15 " in line][-1]      # "BULK 100000000\n"
    assert "close=client" not in bulk and "bytes_out=100000" not in bulk, bulk


def test_logs_of_a_lab_that_is_down_is_one_line():
    result = invoke("logs", "--lab", "nlt-never-up")
    assert result.returncode == 1
    assert result.stderr.strip() == "no server container in lab 'nlt-never-up': run 'invoke up --lab nlt-never-up' first"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB filesystem (tmpfs), nearly full, for captures/."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        (folder / "filler").write_bytes(bytes(700_000))
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


@pytest.mark.needs("root")          # it mounts a filesystem
def test_a_full_disk_cuts_a_capture_with_one_line_that_says_so_and_keeps_the_packets(lab, tiny_disk):
    """On a full 1 MB filesystem a 20 MB capture kept 925 of some 14,000 packets, and the message said
    only "the packets are kept, unannotated"."""
    result = invoke("capture", "--bulk", "20000000", "--name", "full", "--lab", lab,
                    env={"TCPLAB_CAPTURES": str(tiny_disk)})
    out = result.stdout + result.stderr
    said = re.search(r"disk full: capture cut at (\d+) packets", out)
    assert result.returncode == 1 and said and "Traceback" not in out, out
    assert re.search(r"full\.pcap: \d+ packets kept of \d+ captured", out), out      # the totals line
    kept = tiny_disk / "full.pcap"
    assert analyze(kept).frames == int(said[1]) > 0
    assert sorted(path.name for path in tiny_disk.iterdir()) == ["filler", "full.pcap"]
