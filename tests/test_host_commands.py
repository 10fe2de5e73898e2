"""Commands built from the lab's description, and the decisions of bring-up and tear-down.

With invoke's MockContext, these check what the lab asks Docker to do; tests/test_docker_lab.py checks that a
real engine does it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sys

import pytest
from invoke import MockContext
from invoke.runners import Result

from lab.errors import LabError
from lab.host import client_runs, lifecycle, options, settings, state
from lab.host.engines.docker import Docker, explain
from lab.host.engines.lab_engines import Engines
from lab.host.topology import describe
from tests.helpers import mock_docker

LAB = settings.from_config({"lab": {}}, None)
TOPO = describe(LAB)


def commands(c: MockContext) -> list[str]:
    return [call.args[0] for call in c.run.call_args_list]


@pytest.mark.parametrize("args", [TOPO.run_args("server"), TOPO.run_args("client"),
                                  TOPO.run_args("client-run", "ECHO x")])
def test_server_and_client_containers_are_hardened(args):
    joined = " ".join(args)
    for option in ("--user lab", "--cap-drop ALL", "--security-opt no-new-privileges", "--read-only",
                   "--memory 256m", "--pids-limit 128"):
        assert option in joined
    assert "--privileged" not in joined and "--cap-add" not in joined
    assert "--network host" not in joined


@pytest.mark.parametrize("args", [TOPO.run_args("server"), TOPO.run_args("client"),
                                  TOPO.run_args("client-run", "ECHO x"),
                                  TOPO.network_create_args("10.77.0.0/24")])
def test_every_resource_the_lab_creates_carries_its_label(args):
    assert args[args.index("--label") + 1] == "org.tcplab.lab=tcplab"


def test_the_network_is_an_internal_bridge_with_an_explicit_subnet():
    args = TOPO.network_create_args("10.77.3.0/24")
    assert args[:2] == ["network", "create"]
    assert "--internal" in args and args[args.index("--subnet") + 1] == "10.77.3.0/24"
    assert args[-1] == "tcplab-net"


def test_the_client_finds_the_server_by_its_dns_name():
    server = TOPO.run_args("server")
    assert server[server.index("--network-alias") + 1] == "server"
    client = TOPO.run_args("client-run", "ECHO x")
    assert client[client.index("--host") + 1] == "server"
    assert client[client.index("--network") + 1] == "container:tcplab-client"


def test_lab_names_derive_every_resource_name():
    other = settings.from_config({"lab": {"port": 7100}}, "second")
    topology = describe(other)
    assert (other.network, topology.container("server"), topology.container("client"), other.image) == (
        "second-net", "second-server", "second-client", "tcplab/lab:second")
    assert other.label == "org.tcplab.lab=second"


@pytest.mark.parametrize("section, lab, message", [
    ({}, "Bad Name!", "is not usable"),
    ({"port": "http"}, None, "is not a number"),
    ({"port": 70000}, None, "out of range"),
    ({"subnet": "10.77.0.1/24"}, None, "is not a network"),
])
def test_bad_settings_are_one_line_errors(section, lab, message):
    with pytest.raises(LabError, match=message):
        settings.from_config({"lab": section}, lab)


def test_auto_subnet_takes_the_next_24_when_one_overlaps():
    c = mock_docker({
        r"docker network create .*10\.77\.0\.0/24": Result(stderr="Pool overlaps with other one on this address space", exited=1),
        r"docker network create .*": Result(""),
    })
    assert lifecycle.create_network(Engines(c, LAB), TOPO) == "10.77.1.0/24"


def test_an_explicit_subnet_that_overlaps_is_a_one_line_error():
    lab = settings.from_config({"lab": {"subnet": "10.9.0.0/24"}}, None)
    c = mock_docker({r"docker network create": Result(stderr="Error response from daemon: Pool overlaps with other one on this address space", exited=1)})
    with pytest.raises(LabError, match="overlaps a network that exists"):
        lifecycle.create_network(Engines(c, lab), describe(lab))


def test_up_refuses_a_foreign_container_that_has_our_name():
    foreign = [{"Name": "/tcplab-server", "Config": {"Labels": {"maintainer": "someone"}}, "State": {"Running": True}}]
    c = mock_docker({
        r"docker inspect --type=image": Result(json.dumps([{"RepoTags": ["tcplab/lab:tcplab"]}])),
        r"docker inspect tcplab-net": Result(json.dumps(foreign), exited=1),
    })
    with pytest.raises(LabError, match="was not made by lab 'tcplab'"):
        lifecycle.up(c, LAB)
    assert not any(cmd.startswith(("docker rm", "docker run", "docker network create")) for cmd in commands(c))


def test_down_removes_exactly_the_labelled_resources():
    c = mock_docker({
        r"docker ps --all --filter label=org.tcplab.lab=tcplab": Result("aaa\tserver\t\nbbb\tclient\t\nccc\timage\t\n"),
        r"docker network ls -q --filter label=org.tcplab.lab=tcplab": Result("nnn\n"),
        r"docker (rm|network rm)": Result(""),
    })
    lifecycle.down(c, LAB)
    removals = [cmd for cmd in commands(c) if " rm " in cmd]
    assert removals == ["docker rm --force aaa bbb", "docker network rm nnn"]


def test_a_container_started_by_hand_from_our_image_is_not_ours():
    inherited = {"Name": "/tcplab-server", "State": {"Running": True},
                 "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": "image"}}}
    assert not state.is_ours(inherited, TOPO)
    inherited["Config"]["Labels"]["org.tcplab.role"] = "server"
    assert state.is_ours(inherited, TOPO)


def test_down_with_nothing_labelled_removes_nothing():
    c = mock_docker({r"docker (ps|network ls)": Result("")})
    lifecycle.down(c, LAB)
    assert not any(" rm " in cmd for cmd in commands(c))


def test_clean_keeps_the_base_image_unless_asked():
    images = [
        {"Id": "sha256:lab", "RepoTags": ["tcplab/lab:tcplab"], "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": "image"}}},
        {"Id": "sha256:base", "RepoTags": ["tcplab/base:bookworm"], "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": "base"}}},
    ]
    c = mock_docker({
        r"docker (ps|network ls)": Result(""),
        r"docker image ls": Result("sha256:lab\nsha256:base\n"),
        r"docker inspect --type=image": Result(json.dumps(images)),
        r"docker rmi": Result(""),
    })
    lifecycle.clean(c, LAB)
    assert [cmd for cmd in commands(c) if "rmi" in cmd] == ["docker rmi tcplab/lab:tcplab"]
    lifecycle.clean(c, LAB, base=True)
    assert [cmd for cmd in commands(c) if "rmi" in cmd][-1] == "docker rmi tcplab/lab:tcplab tcplab/base:bookworm"


def test_clean_leaves_an_image_built_from_ours_which_inherited_our_labels():
    images = [
        {"Id": "sha256:lab", "RepoTags": ["tcplab/lab:tcplab"], "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": "image"}}},
        {"Id": "sha256:theirs", "RepoTags": ["mine:latest"], "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": "image"}}},
        {"Id": "sha256:untagged", "RepoTags": [], "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": "image"}}},
    ]
    c = mock_docker({
        r"docker (ps|network ls)": Result(""),
        r"docker image ls": Result("sha256:lab\nsha256:theirs\nsha256:untagged\n"),
        r"docker inspect --type=image": Result(json.dumps(images)),
        r"docker rmi": Result(""),
    })
    lifecycle.clean(c, LAB, base=True)
    assert [cmd for cmd in commands(c) if "rmi" in cmd] == ["docker rmi tcplab/lab:tcplab"]


def test_the_hosts_namespaces_get_the_congestion_control_and_no_ipv6_at_creation():
    args = describe(settings.from_config({"lab": {}}, None, cc="reno")).run_args("server")
    assert ["--sysctl", "net.ipv4.tcp_congestion_control=reno"] == args[args.index("--sysctl"):][:2]
    assert "net.ipv6.conf.all.disable_ipv6=1" in args
    joining = describe(settings.from_config({"lab": {}}, None, cc="reno")).run_args("client-run", "ECHO x")
    assert "--sysctl" not in joining          # a container that joins a namespace cannot set its sysctls
    assert "--sysctl" in TOPO.run_args("client") and "tcp_congestion_control" not in " ".join(TOPO.run_args("client"))
    with_ipv6 = describe(settings.from_config({"lab": {"ipv6": "true"}}, None)).run_args("client")
    assert "disable_ipv6" not in " ".join(with_ipv6)


def test_the_syn_timer_backs_off_as_textbooks_say_where_the_engines_kernel_would_not():
    """Whether to set tcp_syn_linear_timeouts is the engine's kernel's answer (lab.host.engines.kernel),
    not this machine's: the engine may be another host."""
    import dataclasses

    from lab.host.engines.kernel import EngineKernel

    lab = settings.from_config({"lab": {}}, None)
    assert "tcp_syn_linear_timeouts" not in " ".join(describe(lab).run_args("client"))       # not asked yet
    without = dataclasses.replace(lab, kernel=EngineKernel(("reno",), ("reno",), syn_linear_timeouts=False))
    assert "tcp_syn_linear_timeouts" not in " ".join(describe(without).run_args("client"))
    linear = dataclasses.replace(lab, kernel=EngineKernel(("reno",), ("reno",), syn_linear_timeouts=True))
    assert "net.ipv4.tcp_syn_linear_timeouts=0" in describe(linear).run_args("server")


def test_the_engines_kernel_is_asked_by_a_helper_container_and_its_answer_read():
    from lab.host.engines.docker import Docker
    from lab.host.engines.kernel import EngineKernel, probe

    c = mock_docker({r"docker run --rm --network none": Result("reno bbr cubic\n|\nreno bbr\n|\nlinear\n")})
    kernel = probe(Docker(c), "tcplab/lab:tcplab")
    assert kernel == EngineKernel(("reno", "bbr", "cubic"), ("reno", "bbr"), True)
    asked = [call.args[0] for call in c.run.call_args_list][-1]
    assert "tcplab/lab:tcplab sh -c" in asked and "--cap-drop ALL" in asked
    both = EngineKernel.of_all([kernel, EngineKernel(("reno", "cubic"), ("reno",), False)])
    assert both == EngineKernel(("reno", "cubic"), ("reno",), False)


def test_a_lab_of_a_class_reads_the_kernels_answer_the_class_asked_once(monkeypatch):
    """`class up` probes each engine once and hands the answer to each lab's `up` (a probe is a
    container's start); a lab alone, or one across nodes, asks its engines itself."""
    from lab.host.engines.kernel import KERNEL_ANSWER_ENV, EngineKernel

    c = mock_docker({r"docker run --rm --network none": Result("reno bbr cubic\n|\nreno bbr\n|\nlinear\n")})
    lab = settings.from_config(c.config)
    monkeypatch.setenv(KERNEL_ANSWER_ENV, "reno cubic\n|\nreno\n|\n")
    told = lifecycle.kernel_of(lab, Engines(c, lab))
    assert told == EngineKernel(("reno", "cubic"), ("reno",), False)
    assert not any("--network none" in call.args[0] for call in c.run.call_args_list)    # nothing was asked
    monkeypatch.delenv(KERNEL_ANSWER_ENV)
    assert lifecycle.kernel_of(lab, Engines(c, lab)) == EngineKernel(("reno", "bbr", "cubic"), ("reno", "bbr"), True)


def test_a_congestion_control_the_engines_kernel_lacks_is_one_line():
    from lab.host.engines.kernel import EngineKernel

    with pytest.raises(LabError, match="offers the congestion controls reno, cubic, not 'bbr'"):
        EngineKernel(("reno", "cubic"), ("reno", "cubic")).check("bbr")
    with pytest.raises(LabError, match="is not a name like reno"):
        settings.from_config({"lab": {}}, None, cc="b b r")


def test_a_congestion_control_the_engine_does_not_allow_containers_is_one_line():
    from lab.host.engines.kernel import EngineKernel

    with pytest.raises(LabError, match="has cubic but lets containers use only reno, bbr"):
        EngineKernel(("reno", "bbr", "cubic"), ("reno", "bbr")).check("cubic")
    EngineKernel(("reno", "bbr", "cubic"), ("reno", "bbr")).check("reno")
    EngineKernel().check("anything")                     # a kernel that did not answer refuses nothing


def test_up_with_another_congestion_control_than_the_running_lab_says_to_go_down_first():
    running = [{"Name": f"/tcplab-{role}", "State": {"Running": True},
                "Config": {"Labels": {"org.tcplab.lab": "tcplab", "org.tcplab.role": role}},
                "HostConfig": {"Sysctls": {"net.ipv4.tcp_congestion_control": "cubic"}}} for role in ("server", "client")]
    image = {"Id": "sha256:x", "RepoTags": ["tcplab/lab:tcplab"], "Config": {"Labels": {}}}
    c = mock_docker({r"docker inspect": Result(json.dumps([*running, image]))})
    with pytest.raises(LabError, match="is up with congestion control cubic: run 'invoke down' first, "
                                       "then 'invoke up --cc reno'"):
        lifecycle.up(c, settings.from_config({"lab": {}}, None, cc="reno"))


def test_send_when_the_lab_is_down_says_to_run_up():
    c = mock_docker({r"docker inspect": Result("[]", exited=1)})
    with pytest.raises(LabError, match="run 'invoke up' first"):
        client_runs.send(c, LAB, ["ECHO x"])


@pytest.mark.parametrize("stderr, advice", [
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", "not running"),
    ("permission denied while trying to connect to the Docker daemon socket", "docker group"),
    ("Error response from daemon: Pool overlaps with other one on this address space", "subnet"),
    ("Unable to find image 'x' locally\nError: No such image: x", "invoke build"),
    ("Error: something new\nwith a last line", "failed: with a last line"),
])
def test_docker_errors_become_one_actionable_line(stderr, advice):
    line = explain(stderr, "docker x")
    assert advice in line and "\n" not in line


def test_a_missing_docker_command_is_named():
    c = mock_docker({r"docker": Result(stderr="sh: 1: docker: not found", exited=127)})
    with pytest.raises(LabError, match="not installed"):
        Docker(c).run(["ps"])


def test_every_docker_command_that_does_something_is_echoed_and_questions_are_not(capsys):
    c = mock_docker({r"docker (ps|run|network)": Result("")})
    Docker(c).run(["run", "--rm", "tcplab/lab:tcplab", "true"], quiet=True)
    Docker(c).run(["network", "create", "tcplab-net"], quiet=True)
    Docker(c).run(["ps", "-a"], quiet=True)
    Docker(c).run(["network", "inspect", "tcplab-net"], quiet=True)
    assert capsys.readouterr().out == "docker run --rm tcplab/lab:tcplab true\ndocker network create tcplab-net\n"


@pytest.mark.parametrize("messages, udp, step, expected", [
    (["ECHO a", "TIME"], False, False, ["ECHO a", "TIME"]),
    (["ECHO a"], True, False, ["--udp", "ECHO a"]),
    (["ECHO a"], False, True, ["--step", "ECHO a"]),
])
def test_send_options_become_client_arguments(messages, udp, step, expected):
    assert options.client_options(messages, udp=udp, step=step) == expected


def test_send_option_mistakes_are_one_line_errors():
    with pytest.raises(LabError, match="nothing to send"):
        options.client_options([""])
    with pytest.raises(LabError, match="TCP only"):
        options.client_options(["ECHO a"], udp=True, step=True)
    with pytest.raises(LabError, match="whole number"):
        options.bulk_options("lots")


def test_a_long_step_shows_what_it_does_now_and_keeps_everything_in_its_log(tmp_path, capsys):
    from lab.host.progress import debootstrap_step, docker_build_step, run_logged

    assert docker_build_step("Step 4/9 : RUN apt-get install -y python3\n") == "step 4/9: RUN apt-get install -y python3"
    assert docker_build_step("#7 [3/9] RUN apt-get update\n") == "step 3/9: RUN apt-get update"
    assert docker_build_step(" ---> Using cache\n") is None
    assert debootstrap_step("I: Retrieving Packages \n") == "Retrieving Packages"
    log = tmp_path / "step.log"
    script = "echo 'Step 1/2 : RUN true'; for i in $(seq 50); do echo noise $i; done; echo 'Step 2/2 : RUN false'; exit 3"
    code, tail = run_logged(["sh", "-c", script], "building", log, docker_build_step)
    shown = capsys.readouterr().out
    assert code == 3 and "noise 25" not in shown and "step 1/2: RUN true" in shown and "step 2/2" in shown
    assert "noise 50" in tail and "noise 1\n" not in tail + "\n"              # the last lines, for the error
    assert log.read_text().count("noise") == 50                              # all of it, in the file
    assert run_logged(["sh", "-c", "echo ok"], "x", log, docker_build_step) == (0, "")


def test_the_server_and_the_client_have_fixed_addresses_in_the_labs_subnet():
    """Server .2, client .3, whatever order docker starts them in: captures read the same every time."""
    server = TOPO.run_args("server", subnet="10.77.5.0/24")
    client = TOPO.run_args("client", subnet="10.77.5.0/24")
    assert server[server.index("--ip") + 1] == "10.77.5.2" and client[client.index("--ip") + 1] == "10.77.5.3"
    assert "--ip" not in TOPO.run_args("client-run", "ECHO x") and "--ip" not in TOPO.run_args("server")


def test_every_host_has_the_labs_names_in_its_hosts_file_and_no_resolver_outside():
    server = TOPO.run_args("server", subnet="10.77.0.0/24")
    words = " ".join(server)
    assert "--add-host server:10.77.0.2 --add-host client:10.77.0.3 --dns 127.0.0.1" in words
    swarm = describe(settings.from_config({"lab": {"engine": "swarm", "nodes": "a,b"}}, None))
    assert "--add-host" not in swarm.run_args("server", subnet="10.77.0.0/24")      # no fixed addresses there


def test_up_starts_again_a_host_made_without_the_names():
    assert lifecycle.lacks_names({"HostConfig": {"ExtraHosts": None}}, TOPO)
    assert not lifecycle.lacks_names({"HostConfig": {"ExtraHosts": ["server:10.77.0.2", "client:10.77.0.3"]}}, TOPO)


class Terminal(io.StringIO):
    """A terminal 80 columns wide, for what the lab prints on one."""

    def isatty(self) -> bool:
        return True


def test_on_a_terminal_each_command_is_one_line_and_every_command_is_logged_whole(monkeypatch, tmp_path):
    """Echoed whole, one `docker run` of the lab is over 300 characters: 4-5 lines at 80 columns."""
    import shutil

    from lab.host.engines import echo

    monkeypatch.setattr(echo, "LOG", tmp_path / "logs" / "commands.log")
    monkeypatch.setattr(echo, "_told_of_log", False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *args: os.terminal_size((80, 24)))
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    command = shlex.join(["docker", *TOPO.run_args("server", subnet="10.77.0.0/24")])
    assert len(command) > 300
    Docker(mock_docker({r"docker .*": Result("")})).run(TOPO.run_args("server", subnet="10.77.0.0/24"), quiet=True)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in screen.getvalue().splitlines()]
    assert len(lines[0]) == 80 and lines[0].endswith("…") and command.startswith(lines[0][:-1])
    assert lines[1].startswith("(each command whole: ") and len(lines[1]) <= 80 and len(lines) == 2
    assert (tmp_path / "logs" / "commands.log").read_text().split(" ", 1)[1] == command + "\n"
    screen.truncate(0), screen.seek(0)
    Docker(mock_docker({r"docker .*": Result("")})).interrupt("nlt-capture")          # housekeeping: log only
    assert screen.getvalue() == "" and "kill --signal INT nlt-capture" in (tmp_path / "logs" / "commands.log").read_text()
