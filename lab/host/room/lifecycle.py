"""`invoke room up|status|down`: a lab room on this machine's engine.

``room up`` builds the lab's image and the room's two (lab.host.room.image), makes each student's
password (kept in ``rooms/ROOM/``: ``passwords.csv`` for the instructor to hand out, ``students.json``
with the hashes the hub checks), and starts the hub and the broker, the only two containers that
get the engine's socket; it returns when the hub answers. Each student's JupyterLab starts when they
log in (lab.host.room.hub), and their lab when they run ``invoke up`` there (lab.host.room.broker).

Everything the room makes carries its label; ``room down`` removes what carries it (the students'
labs too), and keeps the students' files (their volumes) and the room's data unless told.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker
from lab.host.progress import StepDisplay
from lab.host.room import plan
from lab.host.room.broker import PORT as BROKER_PORT
from lab.host.settings import LABEL as LAB_LABEL
from lab.host.settings import from_config
from lab.paths import PROJECT_ROOT, shown
from lab.terminal import say

ROOMS = PROJECT_ROOT / "rooms"
HUB_READY_SECONDS = 120


@dataclasses.dataclass(frozen=True)
class Student:
    id: str             # as on the roster
    lab: str            # their lab's name (lab.course.students.lab_name)
    login: str          # what they type at the hub (the hub folds case)


@dataclasses.dataclass(frozen=True)
class RoomSettings:
    name: str
    students: tuple[Student, ...]
    course_name: str
    course_text: str            # the course file, which every student gets
    key: bytes                  # the course's room key (lab.course.variant.Course.room)
    port: int = 8000
    memory: str = plan.STUDENT_MEMORY
    pids: int = plan.STUDENT_PIDS
    idle: int = plan.IDLE_SECONDS     # seconds; 0: never stop an idle JupyterLab

    @property
    def folder(self) -> Path:
        return ROOMS / self.name


def engine_socket() -> str:
    """The engine's socket on this machine, which the hub and the broker get: a room runs on the engine
    of the machine `room up` runs on."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise LabError(f"a room runs on this machine's own engine (a unix socket), not {host[:60]}: "
                       "run invoke room up on the server itself")
    return host.removeprefix("unix://")


def passwords(settings: RoomSettings) -> dict[str, str]:
    """Each login's password hash: kept from the last `room up` of this room, new for a new student
    (written to passwords.csv for the instructor; nobody else needs it)."""
    folder = settings.folder
    folder.mkdir(parents=True, exist_ok=True)
    kept_path = folder / "students.json"
    kept = json.loads(kept_path.read_text()) if kept_path.is_file() else {}
    new = {student.login: plan.new_password() for student in settings.students if student.login not in kept}
    if new:
        rows_path = folder / "passwords.csv"
        fresh = not rows_path.exists()
        fd = os.open(rows_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", newline="") as rows:
            writer = csv.writer(rows)
            if fresh:
                writer.writerow(["student", "login", "password"])
            for student in settings.students:
                if student.login in new:
                    writer.writerow([_cell(student.id), _cell(student.login), new[student.login]])
        kept.update({login: plan.hash_password(password) for login, password in new.items()})
        kept_path.write_text(json.dumps(kept, indent=1))
        kept_path.chmod(0o600)
    return kept


def _cell(text: str) -> str:
    """A roster id as a spreadsheet cell that stays text (an id cannot begin with '=', but be sure)."""
    return "'" + text if text[:1] in "=+-@\t\r" else text


def up(c: Context, settings: RoomSettings) -> None:
    from lab.host.classroom import shared_image
    from lab.host.room import image

    socket = engine_socket()
    docker = Docker(c)
    hashes = passwords(settings)
    shared_image(c, settings.name, {student.lab: None for student in settings.students})
    image.build(c, settings.name, from_config(c.config, settings.name).image, docker)
    room = settings.name
    if not docker.inspect([plan.front_network(room)], kind="network"):
        docker.run(["network", "create", "--driver", "bridge", *_labels(room, "front"), plan.front_network(room)],
                   quiet=True)
    docker.run(["volume", "create", *_labels(room, "data"), plan.data_volume(room)], quiet=True)
    (settings.folder / "labs.json").write_text(json.dumps(_labs(settings), indent=1))
    students = {s.login: {"student": s.id, "lab": s.lab, "password": hashes[s.login]} for s in settings.students}
    secrets = _env_file(settings.folder / "room.env", {
        "TCPLAB_ROOM": room, "TCPLAB_ROOM_KEY": settings.key.hex(), "TCPLAB_ROOM_COURSE": settings.course_text,
        "TCPLAB_ROOM_LABS": json.dumps(_labs(settings)), "TCPLAB_ROOM_STUDENTS": json.dumps(students),
        "TCPLAB_ROOM_IMAGE": plan.image(room),
        "TCPLAB_ROOM_LIMITS": json.dumps({"memory": settings.memory, "pids": settings.pids, "idle": settings.idle})})
    common = ["--detach", "--restart", "unless-stopped", "--network", plan.front_network(room),
              "--volume", f"{socket}:/var/run/docker.sock", "--volume", f"{plan.data_volume(room)}:/srv/room",
              "--env-file", str(secrets.resolve()), "--user", "0", "--log-opt", "max-size=10m", "--log-opt", "max-file=2"]
    _replace(docker, plan.broker_container(room), [
        *common, *_labels(room, "broker"), plan.hub_image(room), "python", "-m", "lab.host.room.broker"])
    _replace(docker, plan.hub_container(room), [
        *common, *_labels(room, "hub"), "--publish", f"{settings.port}:{plan.HUB_PORT}", plan.hub_image(room),
        "jupyterhub", "-f", "/opt/tcplab/docker/room_hub_config.py"])
    waited = wait_for_hub(room, settings.port)
    say(f"room {room!r} is up ({waited:.1f} s for the hub): students open http://THIS-SERVER:{settings.port}/ "
        f"and log in with their login and password from {shown(settings.folder / 'passwords.csv')}")
    say(f"the broker (the only holder of Docker besides the hub) listens on {BROKER_PORT} inside the room; "
        "invoke room status shows who is in; invoke room down ends the room")


def _env_file(path: Path, values: dict[str, str]) -> Path:
    """The room's settings for its hub and broker, the room's key among them: a file only the
    instructor reads (docker run --env-file), so the key is in no command line or log. One line
    each: the course file's text goes JSON-quoted (lab.host.room.hub and .broker read it so)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        for name, value in values.items():
            text = json.dumps(value) if name == "TCPLAB_ROOM_COURSE" else value
            if "\n" in text:
                raise LabError(f"{name} would not fit on one line of {path.name}")
            out.write(f"{name}={text}\n")
    return path


def _labs(settings: RoomSettings) -> dict[str, str]:
    return {student.id: student.lab for student in settings.students}


def _labels(room: str, role: str) -> list[str]:
    return [word for name, value in plan.labels(room, role).items() for word in ("--label", f"{name}={value}")]


def _replace(docker: Docker, name: str, args: list[str]) -> None:
    """The container ``name`` started anew with ``args`` (a room's own container only, by its label)."""
    found = docker.inspect([name], kind="container")
    if found:
        labels = (found[0].get("Config") or {}).get("Labels") or {}
        if plan.ROOM_LABEL not in labels:
            raise LabError(f"a container named {name} exists and is not a room's: remove or rename it")
        docker.run(["rm", "--force", name], quiet=True)
    docker.run(["run", "--name", name, *args], quiet=True)


def wait_for_hub(room: str, port: int) -> float:
    """Seconds until the hub's API answers through its proxy on ``port``."""
    began = time.monotonic()
    url = f"http://127.0.0.1:{port}/hub/api/"
    shown = -1
    with StepDisplay("waiting for the hub") as show:
        while time.monotonic() - began < HUB_READY_SECONDS:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic() - began
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if int(time.monotonic() - began) > shown:
                shown = int(time.monotonic() - began)
                show(f"{shown} s")
            time.sleep(0.25)
    raise LabError(f"the hub did not answer on port {port} within {HUB_READY_SECONDS} s: see "
                   f"docker logs {plan.hub_container(room)}")


def room_objects(docker: Docker, room: str) -> dict[str, list[str]]:
    """Every container, network and volume the room's label is on (names)."""
    label = f"{plan.ROOM_LABEL}={room}"

    def names(listing: list[str], field: str = "Name") -> list[str]:
        result = docker.run([*listing, "--filter", f"label={label}", "--format", f"{{{{.{field}}}}}"], quiet=True)
        return sorted(result.stdout.split())

    return {"containers": names(["ps", "--all"], "Names"), "networks": names(["network", "ls"]),
            "volumes": names(["volume", "ls"])}


def students_of(room: str) -> dict[str, str]:
    """The room's students and their labs, as `room up` last wrote them (rooms/ROOM/labs.json)."""
    path = ROOMS / room / "labs.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def labs_present(docker: Docker, labs: set[str]) -> list[str]:
    """Which of ``labs`` have a container or a network (the broker brought them up)."""
    found = set()
    for listing in (["ps", "--all"], ["network", "ls"]):
        result = docker.run([*listing, "--filter", f"label={LAB_LABEL}", "--format", f'{{{{.Label "{LAB_LABEL}"}}}}'],
                            quiet=True)
        found.update(result.stdout.split())
    return sorted(found & labs)


def down(c: Context, room: str, work: bool = False) -> None:
    """Remove the room: its containers (the students' JupyterLabs and labs too), its networks; with
    ``work`` also the students' files and the room's data (hub database, the broker's captures and log)."""
    from lab.host import lifecycle as lab_lifecycle

    docker = Docker(c)
    for lab in labs_present(docker, set(students_of(room).values())):
        lab_lifecycle.down(c, from_config(c.config, lab))
    found = room_objects(docker, room)
    if found["containers"]:
        docker.run(["rm", "--force", *found["containers"]], quiet=True)
    if found["networks"]:
        docker.run(["network", "rm", *found["networks"]], quiet=True)
    kept = found["volumes"]
    if work and kept:
        docker.run(["volume", "rm", *kept], quiet=True)
        kept = []
    tags = [from_config(c.config, lab).image for lab in students_of(room).values()]
    present = [tag for tag in tags if docker.inspect([tag], kind="image")]
    if present:
        docker.run(["rmi", *present], quiet=True)
    say(f"room {room!r} is down: removed {len(found['containers'])} container(s), {len(found['networks'])} "
        f"network(s)" + (f"; kept {len(kept)} volume(s) (the students' files and the room's data: "
                         "room down --work removes them)" if kept else ""))


def status(c: Context, room: str) -> None:
    """Who is in the room: the hub, the broker, each student's JupyterLab and lab."""
    from rich.table import Table
    from rich.text import Text

    from lab.terminal import console

    docker = Docker(c)
    found = room_objects(docker, room)
    if not found["containers"] and not found["volumes"]:
        say(f"room {room!r} is not up (invoke room up --roster FILE starts it)")
        return
    states = {obj["Name"].lstrip("/"): obj for obj in docker.inspect(found["containers"], kind="container")}

    def state(name: str) -> str:
        obj = states.get(name)
        return (obj.get("State") or {}).get("Status", "?") if obj else "-"

    table = Table(title=f"room {room}", title_justify="left")
    for column in ("student", "JupyterLab", "lab server", "lab client"):
        table.add_column(column)
    for student, lab in sorted(students_of(room).items()):
        table.add_row(Text(student), state(plan.jupyter_container(lab)), state(f"{lab}-server"),
                      state(f"{lab}-client"))
    console().print(f"hub: {state(plan.hub_container(room))}   broker: {state(plan.broker_container(room))}",
                    highlight=False)
    console().print(table)
