"""`invoke doctor`: what this engine and its kernel can do, and what the lab will use for each.

A learner on a laptop (rootless Docker, Podman, Docker Desktop, WSL2) should know before
the first lesson what will differ there. Everything is asked of the engine, never of
this machine: the engine's own answers (``docker version``, ``docker info``:
lab.host.engines.product) and one short-lived helper container of the lab's image, in a
namespace of its own with NET_ADMIN only, that tries each thing the lessons use (a netem
qdisc, a tbf qdisc, an NFQUEUE rule, a sock_diag socket, an ESP key) on its own loopback
and says what happened. Each line says what to do where something is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker, DockerError
from lab.host.engines.encryption import ESP_KEY_PROBE
from lab.host.engines.lab_engines import Engines
from lab.host.engines.product import Product
from lab.host.settings import AUTO_POOL, Lab
from lab.host.topology import NO_NETWORK, describe
from lab.scenarios.model import needs_refused, refused_words
from lab.terminal import prose

# Each check: a name, and a command that succeeds where the engine's kernel can do it.
CHECKS = {
    "netem": "tc qdisc add dev lo root netem delay 1ms".split(),
    "tbf": "tc qdisc replace dev lo root tbf rate 1mbit burst 32kbit latency 50ms".split(),
    "nfqueue": "iptables -A OUTPUT -o lo -j NFQUEUE --queue-num 7 --queue-bypass".split(),
    "esp": list(ESP_KEY_PROBE),
}
HELPER_MEMORY = 256 * 1024 * 1024      # the helper role's --memory 256m

# Run by the helper's python3 (no shell between the words): one JSON object of answers.
PROBE = """
import json, os, socket, subprocess, sys
checks = json.loads(sys.argv[1])
ok, said = {}, {}
for name, command in checks.items():
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        ok[name], words = done.returncode == 0, (done.stderr or done.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        ok[name], words = False, str(error)
    said[name] = words.splitlines()[0] if words else ""
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4).bind((0, 0))
    ok["sock_diag"] = True
except OSError as error:
    ok["sock_diag"], said["sock_diag"] = False, str(error)
ok["btf"] = os.path.exists("/sys/kernel/btf/vmlinux")
ok["ipv6"] = os.path.exists("/proc/sys/net/ipv6")
def first(*paths):
    for path in paths:
        try:
            return open(path).read().strip()
        except OSError:
            pass
    return ""
facts = {"root_maps_to": (first("/proc/self/uid_map").split() or ["", ""])[1],
         "memory_limit": first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
         "cc_available": first("/proc/sys/net/ipv4/tcp_available_congestion_control"),
         "cc_allowed": first("/proc/sys/net/ipv4/tcp_allowed_congestion_control")}
print(json.dumps({"ok": ok, "said": said, "facts": facts}))
"""


@dataclasses.dataclass
class Answers:
    """What the helper found: each check's success and words, and the facts."""

    ok: dict[str, bool]
    said: dict[str, str]
    facts: dict[str, str]


def parse(output: str) -> Answers:
    try:
        found = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    except ValueError:
        found = {}
    return Answers(dict(found.get("ok") or {}), dict(found.get("said") or {}), dict(found.get("facts") or {}))


def ask_kernel(docker: Docker, lab: Lab) -> Answers | None:
    """Run the checks in a helper of the lab's image; None if the image is not built yet."""
    if not docker.inspect([lab.image], kind="image"):
        return None
    result = docker.run(describe(lab).run_args("helper", command=["python3", "-c", PROBE, json.dumps(CHECKS)], joins=NO_NETWORK),
                        quiet=True, check=False, echo=False)
    return parse(result.stdout)


def diagnose(c: Context, lab: Lab) -> list[tuple[str, str, str]]:
    """(mark, topic, words) for each line: mark is "ok", "note" (works, differently) or "fix"."""
    engines = Engines(c, lab)
    docker = engines.network
    try:
        docker.run(["version", "--format", "{{.Server.Version}}"], quiet=True, echo=False)
    except DockerError as error:
        return [("fix", "engine", str(error))]
    product = docker.product()
    rows = [("ok", "engine", f"{product.words()}, {endpoint_words(docker)}")]
    rows.append(("ok", "rootless", "yes: the containers' root is your user, not the machine's root"
                 if product.rootless else "no: the engine runs as root (rootless Docker and Podman work too: see "
                 "the README's Without root)"))
    if product.storage_driver == "vfs":
        rows.append(("fix", "storage", "the engine stores images with vfs, which copies the whole image for every "
                     "container (some 9 s each here): set driver = \"overlay\" in ~/.config/containers/storage.conf, "
                     "then podman system reset"))
    answers = ask_kernel(docker, lab)
    rows.append(limits_row(product, answers))
    if answers is None:
        rows.append(("note", "kernel", f"the lab's image {lab.image} is not built yet: run 'invoke build', then "
                     "'invoke doctor' again for the kernel's checks"))
    else:
        rows += kernel_rows(answers, product.rootless)
    rows.append(subnet_row(docker))
    return rows


def endpoint_words(docker: Docker) -> str:
    """Where the docker CLI finds this engine, as the user would change it."""
    if docker.host:
        return f"at {docker.host}"
    if os.environ.get("DOCKER_HOST"):
        return f"at {os.environ['DOCKER_HOST']} (DOCKER_HOST)"
    if os.environ.get("DOCKER_CONTEXT"):
        return f"through the docker context {os.environ['DOCKER_CONTEXT']} (DOCKER_CONTEXT)"
    return "the docker CLI's default engine (DOCKER_HOST or a docker context choose another)"


def kernel_rows(answers: Answers, rootless: bool) -> list[tuple[str, str, str]]:
    ok, facts = answers.ok, answers.facts
    rows = []
    maps_to = facts.get("root_maps_to", "")
    if maps_to and maps_to != "0" and not rootless:
        rows.append(("note", "user namespace", f"the containers' root is uid {maps_to} of the engine's host"))
    if ok.get("netem"):
        rows.append(("ok", "link delay", "netem: impair adds delay, loss and reordering with the kernel's qdisc"))
    elif ok.get("nfqueue"):
        rows.append(("note", "link delay", "no netem in this kernel; the lab's own emulator (NFQUEUE) does delay, "
                     "loss and reordering instead, the same for every lesson"))
    else:
        rows.append(("fix", "link delay", "neither netem nor NFQUEUE works here (" + answers.said.get("nfqueue", "")
                     + "): lessons with a delayed or lossy link cannot run; use a kernel with sch_netem or "
                     "xt_NFQUEUE"))
    rows.append(("ok", "rate limit", "tbf") if ok.get("tbf") else
                ("fix", "rate limit", f"tbf is missing ({answers.said.get('tbf', '')}): impair --rate cannot run"))
    allowed = facts.get("cc_allowed", "").split()
    available = facts.get("cc_available", "").split()
    refused = [name for name in available if name not in allowed]
    rows.append(("ok" if not refused else "note", "congestion",
                 f"containers may use {', '.join(allowed) or '?'} (the kernel has {', '.join(available) or '?'})"
                 + (f"; --cc {' or '.join(refused)} is refused until the engine's host allows it in "
                    "net.ipv4.tcp_allowed_congestion_control" if refused else "")))
    rows.append(lessons_row(allowed))
    rows.append(("ok", "kernel view", "sock_diag answers: the capture's --kernel samples cwnd, ssthresh, RTO")
                if ok.get("sock_diag") else
                ("fix", "kernel view", f"sock_diag does not answer ({answers.said.get('sock_diag', '')}): "
                 "capture --kernel cannot sample"))
    rows.append(("ok", "encryption", "ESP: an overlay across hosts can be encrypted") if ok.get("esp") else
                ("note", "encryption", f"the engine's kernel refused an ESP key ({answers.said.get('esp', '')}): "
                 "a lab across hosts runs unencrypted"))
    rows.append(("ok", "BTF", "present") if ok.get("btf") else ("note", "BTF", "absent (no lesson needs it yet)"))
    rows.append(("ok", "IPv6", "present; the lab turns it off in its namespaces") if ok.get("ipv6") else
                ("ok", "IPv6", "absent; the lab uses IPv4 only"))
    return rows


def lessons_row(allowed: list[str]) -> tuple[str, str, str]:
    """Which bundled scenarios cannot run: those about a congestion control containers may not use."""
    if not allowed:
        return ("note", "scenarios", "the kernel did not say which congestion controls containers may use")
    refused = needs_refused(allowed)
    if not refused:
        return ("ok", "scenarios", "every bundled scenario's congestion control is allowed")
    return ("fix", "scenarios", f"these need a congestion control containers may not use here: "
            f"{refused_words(refused)}: allow it on the engine's host (net.ipv4.tcp_allowed_congestion_control)")


def limits_row(product: Product, answers: Answers | None) -> tuple[str, str, str]:
    """Whether --memory holds: as the engine says, and as a container given --memory 256m saw it."""
    limit = (answers.facts if answers else {}).get("memory_limit", "")
    seen = limit.isdigit() and int(limit) == HELPER_MEMORY
    if product.limits_hold and (seen or not limit.isdigit()):
        return ("ok", "limits", f"--memory and --pids-limit are enforced (cgroup v{product.cgroup_version or '?'})")
    evidence = f"; a container given --memory 256m saw no such limit ({limit} bytes)" if limit.isdigit() and not seen else ""
    return ("note", "limits", (product.limits_warning() or "the containers' memory limit is not enforced; the "
                               "server's own bounds still hold") + evidence)


def subnet_row(docker: Docker) -> tuple[str, str, str]:
    """How many of the lab's /24s are free on this engine."""
    taken = docker.subnets_in_use()
    free = [net for net in AUTO_POOL.subnets(new_prefix=24)
            if not any(net.overlaps(other) for other in taken)]
    if not free:
        return ("fix", "subnets", f"every /24 of {AUTO_POOL} is in use: set one with INVOKE_LAB_SUBNET")
    return ("ok", "subnets", f"{len(free)} of {AUTO_POOL}'s /24s are free; the next lab takes {free[0]}")


def report(c: Context, lab: Lab) -> None:
    """Print the diagnosis; exit 1 if something a lesson needs is missing."""
    rows = diagnose(c, lab)
    print("what this engine and its kernel can do, and what the lab will use:")
    for mark, topic, words in rows:
        print(prose(words, f"  {mark:<4}  {topic + ':':<16}", " " * 24))
    if any(mark == "fix" for mark, _, _ in rows):
        raise LabError(code=1)
