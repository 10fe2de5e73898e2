"""Where a swarm lab's docker commands go, and what it decides before it makes its overlay.

With invoke's MockContext: the engines named as the docker CLI names them (addresses or
contexts), the server and client placed by the swarm's own names for its nodes, the
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
from lab.host.docker import engine_args, engine_env
from lab.host.encryption import choose_encryption
from lab.host.swarm import NodeDocker
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


def test_without_names_the_first_engine_serves_and_makes_the_overlay_and_nobody_is_asked():
    c = mock()
    docker = NodeDocker(c, swarm_lab())
    assert docker.route(["run", "--name", "sw-server"]) == A and docker.route(["exec", "sw-client", "true"]) == B
    assert docker.route(["network", "create", "sw-net"]) == A
    assert c.run.call_args_list == []


def test_placed_by_label_and_by_hostname_the_overlay_goes_to_the_manager():
    docker = NodeDocker(mock(), swarm_lab(server_node="tcplab.role=server", client_node="rack2"))
    assert docker.server_node == C and docker.client_node == B
    assert docker.route(["run", "--name", "sw-server"]) == C
    assert docker.route(["run", "--network", "container:sw-client", "--rm"]) == B
    assert docker.route(["network", "create", "sw-net"]) == A == docker.route(["inspect", "--type=network", "x"])


def test_a_client_named_by_the_servers_own_node_is_refused_with_the_nodes_listed():
    docker = NodeDocker(mock(), swarm_lab(server_node="cccccc", client_node="tcplab.role=server"))
    assert docker.server_node == C
    with pytest.raises(LabError, match="it names the server's node") as error:
        _ = docker.client_node
    assert "hostname rack1, tcplab.role=client" in str(error.value) and "\n" not in str(error.value)


def test_a_node_that_does_not_answer_is_not_chosen_and_is_said():
    docker = NodeDocker(mock(gone=(B,)), swarm_lab(server_node="tcplab.role=server"))
    assert docker.server_node == C and docker.client_node == A          # the first that answers and is not taken
    assert docker.unreachable == {B}


def test_questions_about_containers_go_to_every_engine_of_the_lab():
    c = mock()
    NodeDocker(c, swarm_lab()).run(["ps", "-aq"], quiet=True)
    asked = " ".join(call.args[0] for call in c.run.call_args_list)
    assert all(" ".join(engine_args(endpoint)) in asked for endpoint in (A, B, C))


def probe(answer: Result, **section):
    c = mock({r"docker .* run .*--network none .*ip xfrm state add": answer})
    lab = swarm_lab(**section)
    return c, choose_encryption(NodeDocker(c, lab), describe(lab))


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
    from lab.host.placement import Node

    node = Node(C, IDS[C], manager=False, hostname="rack3", labels=(("tcplab.role", "server"),))
    assert node.matches(wanted) is matched


def test_the_clients_node_is_still_found_when_the_servers_has_left():
    docker = NodeDocker(mock(gone=(C,)), swarm_lab(server_node="tcplab.role=server", client_node="rack1"))
    assert docker.route(["exec", "sw-client", "true"]) == A
    with pytest.raises(LabError, match="no node of the lab matches server_node 'tcplab.role=server'"):
        docker.route(["exec", "sw-server", "true"])


def test_an_overlay_is_never_made_over_a_subnet_a_node_bridge_uses():
    """With a bridge lab up on a node (10.77.0.0/24), `up` with engine swarm chose 10.77.0.0/24
    too: the manager made the overlay without a word, and every attach failed after 40 s."""
    from lab.host.lifecycle import create_network

    class Engines:
        made: list[str] = []

        def subnets_in_use(self):
            import ipaddress

            return [ipaddress.ip_network("10.77.0.0/24"), ipaddress.ip_network("172.17.0.0/16")]

        def run(self, args, **kwargs):
            self.made.append(args[args.index("--subnet") + 1])
            return Result(exited=0)

        def print_command(self, args):
            pass

    engines = Engines()
    assert create_network(engines, describe(swarm_lab())) == "10.77.1.0/24" and engines.made == ["10.77.1.0/24"]
    with pytest.raises(LabError, match="overlaps 10.77.0.0/24, a network on one of the nodes"):
        create_network(engines, describe(swarm_lab(subnet="10.77.0.0/24")))
