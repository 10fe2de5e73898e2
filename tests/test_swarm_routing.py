"""Where a swarm lab's docker commands go, and what it decides before it makes its overlay.

With invoke's MockContext: the engines named as the docker CLI names them (addresses or
contexts), the server and client placed by the swarm's own names for its nodes, every
container on its host's engine as the topology says (never recovered from its name), the
overlay made on a manager, and encryption chosen by what the nodes' kernels say.
tests/test_swarm.py does the same on a real two-engine swarm.
"""

from __future__ import annotations

import json
import re

import pytest
from invoke import MockContext
from invoke.runners import Result

from lab.errors import LabError
from lab.host import settings
from lab.host.engines.docker import engine_args, engine_env
from lab.host.engines.encryption import choose_encryption
from lab.host.engines.lab_engines import Engines
from lab.host.topology import describe
from tests.helpers import mock_docker

A, B, C = "unix:///run/a.sock", "ssh://me@host-b", "lab-c"        # two addresses and a docker context
IDS = {A: "aaaaaaaa0001", B: "bbbbbbbb0002", C: "cccccccc0003"}
SWARM = {A: {"NodeID": IDS[A], "ControlAvailable": True}, B: {"NodeID": IDS[B], "ControlAvailable": False},
         C: {"NodeID": IDS[C], "ControlAvailable": False}}
NODES = [{"ID": IDS[A], "Description": {"Hostname": "rack1"}, "Spec": {"Labels": {"tcplab.role": "client"}}},
         {"ID": IDS[B], "Description": {"Hostname": "rack2"}, "Spec": {"Labels": {}}},
         {"ID": IDS[C], "Description": {"Hostname": "rack3"}, "Spec": {"Labels": {"tcplab.role": "server"}}}]


def swarm_lab(**section) -> settings.Lab:
    return settings.from_config({"lab": {"engine": "swarm", "nodes": f"{A},{B},{C}", **section}}, "sw")


def engine_words(endpoint: str) -> str:
    return re.escape(" ".join(engine_args(endpoint)))


def mock(extra: dict[str, Result] | None = None, gone: tuple[str, ...] = ()) -> MockContext:
    """Each engine answers ``docker info`` with its swarm, the manager ``docker inspect --type=node``;
    an engine in ``gone`` answers nothing."""
    answers = dict(extra or {})
    for endpoint, swarm in SWARM.items():
        answers[rf"docker {engine_words(endpoint)} info"] = (
            Result(stderr="Cannot connect to the Docker daemon at ...", exited=1) if endpoint in gone
            else Result(json.dumps(swarm)))
    answers[rf"docker {engine_words(A)} inspect --type=node"] = Result(json.dumps(NODES))
    answers[r"docker .*"] = Result("")
    return mock_docker(answers)


def test_an_address_is_reached_with_H_and_a_context_by_its_name():
    assert engine_args(A) == ["-H", A] and engine_args(C) == ["--context", C] and engine_args(None) == []
    assert engine_env(B) == {"DOCKER_HOST": B} and engine_env(C) == {"DOCKER_CONTEXT": C}


@pytest.mark.parametrize("section, message", [
    ({"nodes": f"{A},-H evil"}, "neither an engine address"),
    ({"nodes": A}, "needs its nodes"),
    ({"encrypt": "maybe"}, "is not one of auto, yes, no"),
])
def test_bad_swarm_settings_are_one_line_errors(section, message):
    with pytest.raises(LabError, match=message):
        swarm_lab(**section)


@pytest.mark.parametrize("written, meant", [("auto", "auto"), ("true", "yes"), ("1", "yes"), ("off", "no")])
def test_encrypt_is_read_however_it_is_written(written, meant):
    assert swarm_lab(encrypt=written).encrypt == meant


def engine_of(engines: Engines, host: str) -> str | None:
    return engines.of(host).host


def test_without_names_the_first_engine_serves_and_makes_the_overlay_and_nobody_is_asked():
    c = mock()
    engines = Engines(c, swarm_lab())
    assert engine_of(engines, "server") == A and engine_of(engines, "client") == B and engines.network.host == A
    assert c.run.call_args_list == []


def test_placed_by_label_and_by_hostname_the_overlay_goes_to_the_manager():
    engines = Engines(mock(), swarm_lab(server_node="tcplab.role=server", client_node="rack2"))
    assert engine_of(engines, "server") == C and engine_of(engines, "client") == B
    assert engines.network.host == A


@pytest.mark.parametrize("role, joins, host", [
    ("server", None, "server"), ("client", None, "client"), ("client-run", None, "client"),
    ("capture", None, "server"), ("sampler", "client", "client"), ("link", "server", "server"),
    ("helper", "client", "client")])
def test_every_container_goes_to_the_engine_of_the_host_whose_namespace_it_is_in(role, joins, host):
    """Each container's engine follows from the description (the host it joins), not from its name:
    a link emulator named sw-link-client-to-server runs beside the server."""
    c = mock()
    lab = swarm_lab(server_node="tcplab.role=server", client_node="rack2")
    launch = describe(lab).launch(role, joins=joins, instance="client-to-server" if role == "link" else None)
    assert launch.host == host
    Engines(c, lab).run(launch, quiet=True, check=False)
    started = [call.args[0] for call in c.run.call_args_list if " run " in call.args[0]]
    assert len(started) == 1 and started[0].startswith(f"docker {' '.join(engine_args({'server': C, 'client': B}[host]))} run")


def test_on_one_engine_every_host_and_the_network_are_the_docker_clis_own():
    c = mock()
    engines = Engines(c, settings.from_config({}, "one"))
    assert engines.of("server") is engines.of("client") is engines.network is engines.home
    assert engines.home.host is None and engines.others == [] and c.run.call_args_list == []


def test_a_client_named_by_the_servers_own_node_is_refused_with_the_nodes_listed():
    engines = Engines(mock(), swarm_lab(server_node="cccccc", client_node="tcplab.role=server"))
    assert engine_of(engines, "server") == C
    with pytest.raises(LabError, match="it names the server's node") as error:
        engines.of("client")
    assert "hostname rack1, tcplab.role=client" in str(error.value) and "\n" not in str(error.value)


def test_a_node_that_does_not_answer_is_not_chosen_and_is_said():
    engines = Engines(mock(gone=(B,)), swarm_lab(server_node="tcplab.role=server"))
    assert engine_of(engines, "server") == C and engine_of(engines, "client") == A    # the first that answers, not taken
    assert engines.unreachable == {B}


def test_questions_for_the_whole_lab_go_to_every_engine_and_one_that_is_gone_is_said():
    c = mock(gone=(C,))
    engines = Engines(c, swarm_lab())
    answers = engines.each(lambda docker: docker.run(["info", "--format", "x"], quiet=True).stdout)
    assert len(answers) == 2 and engines.unreachable == {C}
    asked = " ".join(call.args[0] for call in c.run.call_args_list)
    assert all(" ".join(engine_args(endpoint)) in asked for endpoint in (A, B, C))


def probe(answer: Result, **section):
    c = mock({r"docker .* run .*--network none .*ip xfrm state add": answer})
    lab = swarm_lab(**section)
    return c, choose_encryption(Engines(c, lab), describe(lab))


def test_the_overlay_is_encrypted_where_both_kernels_take_an_esp_key():
    c, (encrypted, said) = probe(Result(""))
    assert encrypted and said.startswith("encrypted (IPsec ESP")
    probes = [call.args[0] for call in c.run.call_args_list if "xfrm" in call.args[0]]
    assert len(probes) == 2 and all("--cap-drop ALL --cap-add NET_ADMIN" in command for command in probes)
    assert describe(swarm_lab()).network_create_args("10.79.0.0/24", encrypted)[4:7] == \
        ["--attachable", "--opt", "encrypted"]


def test_a_kernel_without_esp_leaves_the_overlay_plain_and_says_so_or_refuses_if_told():
    no_esp = Result(stderr="Error: Requested AEAD algorithm not found.\n", exited=2)
    _, (encrypted, said) = probe(no_esp)
    assert not encrypted and f"on {A} and {B}: 'Requested AEAD algorithm not found.'" in said
    with pytest.raises(LabError, match="encrypt is yes, but a node's kernel has no IPsec ESP"):
        probe(no_esp, encrypt="yes")


def test_encrypt_no_asks_no_kernel():
    c, (encrypted, said) = probe(Result(""), encrypt="no")
    assert not encrypted and "encrypt: no" in said and c.run.call_args_list == []


@pytest.mark.parametrize("wanted, matched", [
    ("tcplab.role=server", True), ("tcplab.role=client", False), ("rack3", True), ("rack", False),
    ("cccccccc0003", True), ("cccccc", True), ("ccc", False), ("tcplab.role", False)])
def test_a_node_is_named_by_label_hostname_or_id_as_docker_node_takes_them(wanted, matched):
    from lab.host.engines.placement import Node

    node = Node(C, IDS[C], manager=False, hostname="rack3", labels=(("tcplab.role", "server"),))
    assert node.matches(wanted) is matched


def test_the_clients_node_is_still_found_when_the_servers_has_left():
    engines = Engines(mock(gone=(C,)), swarm_lab(server_node="tcplab.role=server", client_node="rack1"))
    assert engine_of(engines, "client") == A
    with pytest.raises(LabError, match="no node of the lab matches server_node 'tcplab.role=server'"):
        engines.of("server")


def test_an_overlay_is_never_made_over_a_subnet_a_node_bridge_uses():
    """With a bridge lab up on a node (10.77.0.0/24), `up` with engine swarm chose 10.77.0.0/24
    too: the manager made the overlay without a word, and every attach failed after 40 s."""
    from lab.host.lifecycle import create_network

    bridge = json.dumps([{"Name": "nlt-net", "IPAM": {"Config": [{"Subnet": "10.77.0.0/24"}]}}])
    c = mock({rf"docker {engine_words(B)} network ls -q": Result("n1\n"),
              rf"docker {engine_words(B)} inspect --type=network n1": Result(bridge),
              r"docker .* network create": Result("")})
    lab = swarm_lab()
    assert create_network(Engines(c, lab), describe(lab)) == "10.77.1.0/24"
    made = [call.args[0] for call in c.run.call_args_list if "network create" in call.args[0]]
    assert made[-1].startswith(f"docker {' '.join(engine_args(A))} network create --driver overlay")
    assert "--subnet 10.77.1.0/24" in made[-1]
    lab = swarm_lab(subnet="10.77.0.0/24")
    with pytest.raises(LabError, match="overlaps 10.77.0.0/24, a network on one of the nodes"):
        create_network(Engines(c, lab), describe(lab))


def test_a_container_started_in_the_background_goes_to_its_hosts_engine_too(monkeypatch):
    """A sampler or a capture engine is started with Popen, not run: the first version of the
    engines-by-host sent the client's sampler to this machine's engine (found on the cluster)."""
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kwargs: started.append(args))
    lab = swarm_lab()
    Engines(mock(), lab).popen(describe(lab).launch("sampler", joins="client", instance="client"), stderr=None)
    assert started[0][:4] == ["docker", *engine_args(B), "run"]


def test_housekeeping_goes_to_the_same_engines_without_asking_the_swarm_again():
    c = mock()
    engines = Engines(c, swarm_lab(server_node="tcplab.role=server", client_node="rack2"))
    assert engine_of(engines, "server") == C
    asked = len(c.run.call_args_list)
    quiet = engines.quiet()
    assert engine_of(quiet, "server") == C and engine_of(quiet, "client") == B and not quiet.of("client").echo
    assert len(c.run.call_args_list) == asked and quiet.unreachable is engines.unreachable
