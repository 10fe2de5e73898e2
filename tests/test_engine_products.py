"""Which engine answers, from what the engines on this machine said (tests/engines/: rootful Docker,
rootless Docker and rootless Podman 4.3 through its socket, recorded with the docker CLI), and
what the lab does differently on each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke import MockContext, Result

from lab.host.engines import docker as docker_module
from lab.host.engines.docker import Docker
from lab.host.engines.product import Product, parse
from lab.host.settings import SYSCTLS_LABEL
from lab.host.state import image_names, sysctls_of

RECORDED = Path(__file__).parent / "engines"


def recorded(name: str) -> Product:
    return parse((RECORDED / f"{name}.version.json").read_text(), (RECORDED / f"{name}.info.json").read_text())


def test_rootful_docker_is_docker_with_limits():
    product = recorded("rootful")
    assert (product.name, product.rootless, product.limits_hold) == ("Docker", False, True)
    assert not product.loses_exit_code_of_removed and product.limits_warning() is None
    assert product.words().startswith("Docker 20.10")


def test_rootless_docker_on_cgroup_v1_is_said_to_enforce_no_limits():
    product = recorded("rootless")
    assert (product.name, product.rootless, product.cgroup_driver) == ("Docker", True, "none")
    assert not product.limits_hold
    warning = product.limits_warning()
    assert warning is not None and "not enforced" in warning and "rootless on cgroup v1" in warning
    assert product.words() == "rootless Docker 20.10.24+dfsg1 (cgroup v1)"


def test_podman_through_its_socket_is_podman_rootless_and_loses_exit_codes_before_4_6():
    product = recorded("podman")
    assert (product.name, product.version, product.rootless) == ("Podman", "4.3.1", True)
    assert product.loses_exit_code_of_removed and not product.limits_hold
    assert not Product(name="Podman", version="4.6.0").loses_exit_code_of_removed
    assert not Product(name="Podman", version="5.4.2", cgroup_version="2").loses_exit_code_of_removed


def test_an_engine_that_said_nothing_is_plain_docker():
    assert parse("", "not json") == Product()


def test_podman_s_qualified_image_names_are_the_lab_s_names():
    image = {"RepoTags": ["docker.io/tcplab/lab:x", "localhost/tcplab/base:bookworm", "docker.io/library/debian:bookworm-slim"]}
    assert image_names(image) == {"tcplab/lab:x", "tcplab/base:bookworm", "debian:bookworm-slim"}
    assert image_names({"RepoTags": ["tcplab/lab:x"]}) == {"tcplab/lab:x"}


def test_sysctls_come_from_the_label_where_the_engine_answers_null():
    labelled = {"HostConfig": {"Sysctls": None},
                "Config": {"Labels": {SYSCTLS_LABEL: '{"net.ipv4.tcp_congestion_control": "reno"}'}}}
    assert sysctls_of(labelled) == {"net.ipv4.tcp_congestion_control": "reno"}
    assert sysctls_of({"HostConfig": {"Sysctls": {"a": "1"}}}) == {"a": "1"}
    assert sysctls_of({"Config": {"Labels": {SYSCTLS_LABEL: "[not a dict"}}}) == {}


@pytest.fixture
def podman_4_3(monkeypatch):
    monkeypatch.setitem(docker_module._PRODUCTS, "unix:///podman.sock", recorded("podman"))


def test_on_podman_4_3_a_run_with_rm_runs_without_it_and_the_lab_removes_the_container(podman_4_3, tmp_path):
    """Podman 4.3 answered `docker run --rm ... sh -c 'exit 3'` with 0: impair took tc's refusal of
    netem for success, and `send` an error for an answer."""
    c = MockContext(run={re.compile(r"docker -H unix:///podman\.sock run --cidfile \S+ --network none img sh -c 'exit 3'"):
                         Result(exited=3),
                         re.compile(r"docker -H unix:///podman\.sock rm --force \S+"): Result()},
                    repeat=True)
    seen: list[str] = []
    original = c.run

    def run(command, **kwargs):
        seen.append(command)
        if " run --cidfile " in command:     # the engine writes the container's id there
            Path(command.split("--cidfile ")[1].split()[0]).write_text("abc123")
        return original(command, **kwargs)

    c.run = run
    result = Docker(c, echo=False, host="unix:///podman.sock").run(
        ["run", "--rm", "--network", "none", "img", "sh", "-c", "exit 3"], quiet=True, check=False)
    assert result.exited == 3
    assert "--rm" not in seen[0] and seen[1].endswith("rm --force abc123")


def test_on_docker_a_run_with_rm_is_left_as_it_is(monkeypatch):
    monkeypatch.setitem(docker_module._PRODUCTS, "unix:///docker.sock", recorded("rootful"))
    c = MockContext(run={"docker -H unix:///docker.sock run --rm img true": Result()})
    Docker(c, echo=False, host="unix:///docker.sock").run(["run", "--rm", "img", "true"], quiet=True)


def test_doctor_says_what_to_do_where_a_kernel_lacks_what_a_lesson_needs():
    from lab.host.doctor import Answers, kernel_rows

    bare = Answers(ok={"netem": False, "nfqueue": False, "tbf": False, "sock_diag": False, "esp": False},
                   said={"nfqueue": "iptables: No chain/target/match by that name."},
                   facts={"cc_available": "reno cubic", "cc_allowed": "reno"})
    rows = {topic: (mark, words) for mark, topic, words in kernel_rows(bare, rootless=False)}
    assert rows["link delay"][0] == "fix" and "No chain/target/match" in rows["link delay"][1]
    assert rows["rate limit"][0] == rows["kernel view"][0] == "fix"
    assert rows["congestion"] == ("note", "containers may use reno (the kernel has reno, cubic); --cc cubic is "
                                  "refused until the engine's host allows it in net.ipv4.tcp_allowed_congestion_control")
    full = Answers(ok={"netem": True, "nfqueue": True, "tbf": True, "sock_diag": True, "esp": True, "btf": True,
                       "ipv6": True}, said={}, facts={"cc_available": "reno cubic bbr",
                                                      "cc_allowed": "reno cubic bbr"})
    assert all(mark == "ok" for mark, _, _ in kernel_rows(full, rootless=False))
    assert "netem" in {topic: words for _, topic, words in kernel_rows(full, rootless=False)}["link delay"]


def test_the_lessons_a_kernel_refuses_are_named_before_a_learner_meets_them():
    """A kernel whose containers may use cubic alone refuses the scenarios about reno and bbr;
    this machine's (reno, bbr) refuses none: each scenario's own cc and flow_cc are read."""
    from lab.host.doctor import lessons_row
    from lab.scenarios.model import load, needs_refused

    refused = needs_refused(["cubic"])
    assert refused == {name: needed for name, needed in refused.items()}      # insertion order: by name
    for name, needed in refused.items():
        scenario = load(name)
        assert set(needed) == {scenario.cc, *scenario.exchange.get("flow_cc", [])} - {None, "cubic"}
    assert {"aimd", "bbr", "slow-start", "fairness-bbr-reno"} <= set(refused)
    assert needs_refused(["reno", "bbr", "cubic"]) == {}
    mark, topic, words = lessons_row(["cubic"])
    assert (mark, topic) == ("fix", "scenarios") and "aimd (reno)" in words and "fairness-bbr-reno (bbr, reno)" in words
    assert lessons_row(["reno", "bbr", "cubic"])[0] == "ok"
