"""`invoke class up|status|down`: many labs on one Docker engine, one for each student.

Each lab is an ordinary lab (its own internal network and /24, its server and client
host), named from the class and the student (``net101-alice``), and marked with the
class's group label, by which `class status` and `class down` find them: all of them,
and nothing else. They share one image, built once (its tag is the class's name).

Labs come up in parallel, each as its own `invoke up` in a subprocess (its output in a
log file the progress display names when one fails): a lab's bring-up is mostly
waiting for the Docker engine, which takes several requests at once.

Over a swarm (``engine: swarm`` and its ``nodes``), each lab is placed whole on the node
with the most free memory (its engine's memory less what its running containers were
promised), as a lab of its own on that node's engine; `class status` says which node.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker, engine_env
from lab.host.engines.kernel import KERNEL_ANSWER_ENV, probe_answer
from lab.host.progress import log_file
from lab.host.settings import GROUP_LABEL, LABEL, check_name, from_config
from lab.host.state import image_names
from lab.paths import PROJECT_ROOT
from lab.terminal import console, say

PARALLEL = 4
MAX_LABS = 250                   # /24s of the lab pool, less room for the learner's own


def lab_names(group: str, count: int | None = None, by_student: dict[str, str] | None = None) -> dict[str, str]:
    """Lab name by student (as the course named them: lab.course.students.lab_name), or by
    number (01..N), each checked usable and none taken twice."""
    if by_student:
        names = dict(by_student)
    elif count:
        if not 1 <= count <= MAX_LABS:
            raise LabError(f"--count must be between 1 and {MAX_LABS}, got {count}")
        names = {f"{number:02d}": f"{group}-{number:02d}" for number in range(1, count + 1)}
    else:
        raise LabError("give --count N (labs 01..N) or --roster FILE (a lab for each student)")
    for name in names.values():
        check_name(name)
    taken: dict[str, str] = {}
    for student, name in names.items():
        if name in taken:
            raise LabError(f"{taken[name]!r} and {student!r} would share lab {name}: rename one in the roster")
        taken[name] = student
    return names


def engines(c: Context) -> list[str | None]:
    """Where a class's labs may go: the swarm's nodes (the configuration's ``nodes``, with
    ``engine: swarm``), each a whole lab at a time; else this machine's engine (None)."""
    lab = from_config(c.config)
    return list(lab.nodes) if lab.kind.spans_nodes else [None]


def _bring_up(name: str, group: str, node: str | None, kernel_answer: str) -> tuple[str, int, Path]:
    """One lab up, as `invoke up` in a subprocess: on ``node``'s engine as a lab of its own
    (DOCKER_HOST or DOCKER_CONTEXT, as the docker CLI is pointed at another engine), or on this
    machine's; told what that engine's kernel answered the class's probe."""
    log = log_file(f"class-{name}")
    env = {**os.environ, "INVOKE_LAB_GROUP": group, "INVOKE_LAB_ENGINE": "bridge", KERNEL_ANSWER_ENV: kernel_answer,
           **(engine_env(node) if node else {})}
    with open(log, "w") as out:
        code = subprocess.run([sys.executable, "-m", "invoke", "up", "--lab", name], cwd=PROJECT_ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
    return name, code, log


def free_memory(docker: Docker) -> int:
    """Bytes of an engine's memory not promised to its running containers (their --memory)."""
    info = docker.run(["info", "--format", "{{.MemTotal}}"], quiet=True, echo=False).stdout.strip()
    ids = docker.run(["ps", "-q"], quiet=True, echo=False).stdout.split()
    promised = sum((item.get("HostConfig") or {}).get("Memory") or 0 for item in docker.inspect(ids, kind="container"))
    return int(info or 0) - promised


def place(c: Context, labs: list[str], nodes: list[str | None]) -> dict[str, str | None]:
    """Each lab on the node with the most free memory at that moment (a lab's two containers
    count as their memory limits): whole labs, spread by what the nodes can hold."""
    if nodes == [None]:
        return {lab: None for lab in labs}
    per_lab = 2 * _bytes(from_config(c.config).memory)
    free = {node: free_memory(Docker(c, host=node)) for node in nodes}
    placed = {}
    for lab in labs:
        node = max(free, key=lambda candidate: free[candidate])
        placed[lab] = node
        free[node] -= per_lab
    return placed


def _bytes(size: str) -> int:
    found = re.fullmatch(r"(\d+)([kmg]?)b?", size.strip().lower())
    if found is None:
        raise LabError(f"memory {size!r} is not a size like 256m: fix it in invoke.yaml or INVOKE_LAB_MEMORY")
    number, unit = found.groups()
    return int(number) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def shared_image(c: Context, group: str, placed: dict[str, str | None]) -> None:
    """Build the class's image once (tcplab/lab:GROUP, if it is not current), copy it to each node
    that has a lab, and tag it there for each lab: each lab finds its own image as a lab alone
    would, and nothing is built twice."""
    from lab.host.engines.image_copy import copy_image
    from lab.host.image import build_unless_current, is_current

    lab = from_config(c.config, group)          # the user's image and mirror, as each lab's own up uses
    build_unless_current(c, lab, Docker(c))
    for node in dict.fromkeys(placed.values()):
        docker = Docker(c, host=node)
        if node:
            copy_image(docker, lab.image, is_current)
        for name in (name for name, where in placed.items() if where == node):
            docker.run(["tag", lab.image, from_config(c.config, name).image], quiet=True, echo=False)


def up(c: Context, group: str, names: dict[str, str]) -> None:
    """Bring up every lab of the class, PARALLEL at a time, with a progress display."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    labs = list(names.values())
    placed = place(c, labs, engines(c))
    shared_image(c, group, placed)
    image = from_config(c.config, group).image
    kernel_answers = {node: probe_answer(Docker(c, host=node), image) for node in dict.fromkeys(placed.values())}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console()) as progress:
        task = progress.add_task(f"class {group}: labs up", total=len(labs))
        done = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            for result in pool.map(lambda name: _bring_up(name, group, placed[name], kernel_answers[placed[name]]),
                                   labs):
                done.append(result)
                progress.advance(task)
    failed = [(name, log) for name, code, log in done if code != 0]
    if failed:
        first_name, first_log = failed[0]
        raise LabError(f"{len(failed)} of {len(labs)} labs did not come up ({first_name}: see {first_log}); "
                       f"invoke class down --group {group} removes them all")
    where = ""
    if any(placed.values()):
        counts = {node: sum(1 for n in placed.values() if n == node) for node in dict.fromkeys(placed.values())}
        where = " (" + ", ".join(f"{count} on {node}" for node, count in counts.items()) + ")"
    say(f"class {group}: {len(labs)} labs up{where}; a student's tasks take --lab {group}-ID"
        + (f"; invoke class status says on which node ({pointer(placed)}=NODE before the task)" if where else ""))


def pointer(placed: dict[str, str | None]) -> str:
    """How a student points the docker CLI at their lab's node: DOCKER_HOST, or DOCKER_CONTEXT
    where the nodes are contexts."""
    return " or ".join(dict.fromkeys(next(iter(engine_env(node))) for node in placed.values() if node))


def class_labs(docker: Docker, group: str) -> set[str]:
    """The labs of the class: those whose network or long-lived containers carry its label."""
    labs: set[str] = set()
    for kind in ("network", "ps"):
        listing = ["network", "ls"] if kind == "network" else ["ps", "--all"]
        result = docker.run([*listing, "--filter", f"label={GROUP_LABEL}={group}", "--format",
                             f'{{{{.Label "{LABEL}"}}}}'], quiet=True, echo=False)
        labs.update(line.strip() for line in result.stdout.splitlines() if line.strip())
    return labs


def _lab_containers(docker: Docker, labs: set[str]) -> list[dict[str, str]]:
    """Every container of these labs, the long-lived ones and any a task started later
    (a capture, a link emulator), which carry the lab's label but not the class's."""
    fields = "{{.ID}}\t{{.Names}}\t{{.State}}\t" + f'{{{{.Label "{LABEL}"}}}}'
    result = docker.run(["ps", "--all", "--filter", f"label={LABEL}", "--format", fields], quiet=True, echo=False)
    keys = ("id", "name", "state", "lab")
    found = [dict(zip(keys, line.split("\t"))) for line in result.stdout.splitlines() if line.strip()]
    return [container for container in found if container.get("lab") in labs]


def status(c: Context, group: str) -> None:
    """A table: each lab of the class, where it runs (on a swarm), its containers' states."""
    from rich.table import Table

    nodes = engines(c)
    rows = []
    for node in nodes:
        docker = Docker(c, host=node)
        by_lab: dict[str, list[str]] = {}
        for container in _lab_containers(docker, class_labs(docker, group)):
            by_lab.setdefault(container["lab"], []).append(
                f"{container['name'].removeprefix(container['lab'] + '-')}: {container['state']}")
        rows += [(lab, node, states) for lab, states in by_lab.items()]
    if not rows:
        say(f"class {group} has no lab on {'its nodes' if nodes != [None] else 'this engine'}")
        return
    table = Table(title=f"class {group}: {len(rows)} labs")
    table.add_column("lab")
    if nodes != [None]:
        table.add_column("node")
    table.add_column("containers")
    table.add_column("up")
    for lab, node, states in sorted(rows, key=lambda row: row[0]):
        table.add_row(lab, *([node] if nodes != [None] else []), ", ".join(sorted(states)),
                      "yes" if all(s.endswith(": running") for s in states) else "NO")
    console().print(table)


def down(c: Context, group: str) -> None:
    """Remove the class's labs on every engine it uses: their containers, networks and image tags
    (the class's own image stays, as `down` leaves a lab's: `invoke clean --lab GROUP` removes it)."""
    removed = {"labs": 0, "containers": 0, "networks": 0}
    for node in engines(c):
        docker = Docker(c, host=node)
        labs = class_labs(docker, group)
        containers = [container["id"] for container in _lab_containers(docker, labs)]
        if containers:
            docker.run(["rm", "--force", *containers], quiet=True)
        networks = docker.ids("network", f"{GROUP_LABEL}={group}")
        if networks:
            docker.run(["network", "rm", *networks], quiet=True)
        tags = [from_config(c.config, lab).image for lab in sorted(labs)]
        present = {tag for image in docker.inspect(tags, kind="image") for tag in image_names(image)}
        if present & set(tags):
            docker.run(["rmi", *sorted(present & set(tags))], quiet=True)
        for key, count in (("labs", len(labs)), ("containers", len(containers)), ("networks", len(networks))):
            removed[key] += count
    say(f"class {group}: removed {removed['labs']} labs ({removed['containers']} containers, "
        f"{removed['networks']} networks)" if removed["labs"] else f"class {group} has nothing to remove")
