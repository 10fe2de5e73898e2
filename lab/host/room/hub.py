"""The room's JupyterHub: who may log in (the roster, each with the password `room up` made), and
how each student's JupyterLab is started (RoomSpawner, a DockerSpawner): a container of the room's
image on a network of its own, which the hub and the broker join and nothing else does.

Runs inside the room's hub container only (it needs jupyterhub and dockerspawner, which the room's
image has); ``docker/room_hub_config.py`` calls :func:`configure`. Everything the hub knows of the
room comes from its environment, written by lab.host.room.lifecycle:

    TCPLAB_ROOM            the room's name
    TCPLAB_ROOM_KEY        the room's key (hex): the students' broker tokens are made from it
    TCPLAB_ROOM_STUDENTS   {login: {"student": roster id, "lab": lab name, "password": scrypt hash}}
    TCPLAB_ROOM_IMAGE      the students' image
    TCPLAB_ROOM_COURSE     the course file's text, JSON-quoted (public: every student has it)
    TCPLAB_ROOM_LIMITS     {"memory": "1g", "pids": 256, "idle": SECONDS (0: never stop an idle JupyterLab)}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from typing import Any

from dockerspawner import DockerSpawner
from jupyterhub.auth import Authenticator
from traitlets import default

from lab.host.isolation import cut_from_host_steps
from lab.host.room import plan
from lab.host.room.tokens import token_for

ROOM = os.environ.get("TCPLAB_ROOM", "room")
STUDENTS: dict[str, dict[str, str]] = json.loads(os.environ.get("TCPLAB_ROOM_STUDENTS", "{}"))


def password_matches(stored: str, given: str) -> bool:
    """``stored`` is ``scrypt$SALT$HASH`` (hex), as lab.host.room.plan.hash_password writes it."""
    try:
        _, salt, digest = stored.split("$")
        tried = hashlib.scrypt(given.encode(), salt=bytes.fromhex(salt), n=2 ** 14, r=8, p=1).hex()
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(tried, digest)


class RosterAuthenticator(Authenticator):
    """The roster's students, each with the password the instructor handed out (rooms/NAME/passwords.csv).
    A real course plugs in its institution's login instead (README, For instructors)."""

    @default("allow_all")
    def _no_one_else(self) -> bool:
        return False

    async def authenticate(self, handler: Any, data: dict) -> str | None:
        login = self.normalize_username(str(data.get("username", "")))
        entry = STUDENTS.get(login)
        if entry is None or not password_matches(entry["password"], str(data.get("password", ""))):
            return None
        return login


class RoomSpawner(DockerSpawner):
    """Each student's JupyterLab: the room's image, non-root, no capabilities, memory and process
    limits, no Docker socket, on a network of its own that only the hub and the broker join; the
    room's broker address and the student's token in its environment; then no way to the host."""

    def entry(self) -> dict[str, str]:
        return STUDENTS[self.user.name]

    @default("object_name")
    def _object_name_default(self) -> str:
        return plan.jupyter_container(self.entry()["lab"])

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        entry = self.entry()
        env.update({
            "INVOKE_LAB_ENGINE": "room",
            "TCPLAB_BROKER": f"{plan.broker_container(ROOM)}:{plan.BROKER_PORT}",
            "TCPLAB_BROKER_TOKEN": token_for(bytes.fromhex(os.environ["TCPLAB_ROOM_KEY"]), entry["student"]),
            "TCPLAB_STUDENT": entry["student"],
            "TCPLAB_COURSE_TOML": json.loads(os.environ.get("TCPLAB_ROOM_COURSE") or '""'),
            "TCPLAB_CAPTURES": f"{plan.WORKSPACE}/captures",
            "TCPLAB_SUBMISSIONS": f"{plan.WORKSPACE}/submissions",
        })
        return env

    async def start(self) -> Any:
        lab = self.entry()["lab"]
        limits = json.loads(os.environ.get("TCPLAB_ROOM_LIMITS", "{}"))
        network = plan.student_network(lab)
        await self.own_network(network)
        self.network_name = network
        self.image = os.environ["TCPLAB_ROOM_IMAGE"]
        self.remove = True
        await self.docker("create_volume", plan.work_volume(lab), labels=plan.labels(ROOM, "work"))
        self.volumes = {plan.work_volume(lab): plan.WORKSPACE}
        self.mem_limit = plan.memory_bytes(limits.get("memory", plan.STUDENT_MEMORY))
        self.extra_create_kwargs = {"labels": plan.labels(ROOM, "jupyter"), "hostname": "jupyter"}
        self.extra_host_config = {
            "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
            "pids_limit": int(limits.get("pids", plan.STUDENT_PIDS)),
            "read_only": True, "tmpfs": {"/tmp": "rw,nosuid,nodev,size=256m"},
        }
        started = await super().start()
        await self.cut_from_host(network)
        return started

    async def own_network(self, network: str) -> None:
        """The student's network (internal: nothing leaves it), with the hub and the broker on it."""
        found = await self.docker("networks", names=[network])
        if not any(entry["Name"] == network for entry in found):
            await self.docker("create_network", network, driver="bridge", internal=True,
                              labels=plan.labels(ROOM, "network"))
        for container in (plan.hub_container(ROOM), plan.broker_container(ROOM)):
            attached = await self.docker("inspect_container", container)
            if network not in attached["NetworkSettings"]["Networks"]:
                await self.docker("connect_container_to_network", container, network)

    async def cut_from_host(self, network: str) -> None:
        """As the lab does for its own hosts (lab.host.isolation): no default route, and
        nothing to the gateway (the host) or to broadcast and multicast, from a helper with NET_ADMIN;
        the student's container has no capability to undo it."""
        command = ["sh", "-c", " && ".join(cut_from_host_steps(await self.docker("inspect_network", network)))]
        helper = await self.docker(
            "create_container", image=os.environ["TCPLAB_ROOM_IMAGE"], command=command, user="0",
            labels=plan.labels(ROOM, "helper"),
            host_config=self.client.create_host_config(network_mode=f"container:{self.object_id}",
                                                       cap_drop=["ALL"], cap_add=["NET_ADMIN"],
                                                       security_opt=["no-new-privileges"]))
        try:
            await self.docker("start", helper["Id"])
            result = await self.docker("wait", helper["Id"], timeout=60)
            if result.get("StatusCode"):
                logs = await self.docker("logs", helper["Id"])
                raise RuntimeError(f"cutting {self.object_name} from the host failed: {logs[-300:]!r}")
        finally:
            await self.docker("remove_container", helper["Id"], force=True)


def configure(c: Any) -> None:
    """The hub's configuration (``c``, traitlets' config object of docker/room_hub_config.py)."""
    c.JupyterHub.authenticator_class = RosterAuthenticator
    c.JupyterHub.spawner_class = RoomSpawner
    c.JupyterHub.hub_ip = "0.0.0.0"
    c.JupyterHub.hub_connect_ip = plan.hub_container(ROOM)
    c.JupyterHub.bind_url = f"http://0.0.0.0:{plan.HUB_PORT}"
    c.JupyterHub.db_url = "sqlite:////srv/room/jupyterhub.sqlite"
    c.JupyterHub.cookie_secret_file = "/srv/room/jupyterhub_cookie_secret"
    c.ConfigurableHTTPProxy.pid_file = "/srv/room/jupyterhub-proxy.pid"
    c.JupyterHub.cleanup_servers = True
    c.Authenticator.allowed_users = set(STUDENTS)
    c.Spawner.default_url = "/lab"
    c.Spawner.notebook_dir = plan.WORKSPACE
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 120
    c.DockerSpawner.use_internal_ip = True
    idle = int(json.loads(os.environ.get("TCPLAB_ROOM_LIMITS", "{}")).get("idle", plan.IDLE_SECONDS))
    if idle:
        # JupyterHub's idle culler, as a service of the hub with only the rights it needs: a JupyterLab
        # nobody used for `idle` seconds is stopped (its container goes; the student's volume stays).
        c.JupyterHub.load_roles = [{"name": "idle-culler", "services": ["idle-culler"],
                                    "scopes": ["list:users", "read:users:activity", "read:servers",
                                               "delete:servers"]}]
        c.JupyterHub.services = [{"name": "idle-culler", "command": [
            sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle}", f"--cull-every={max(5, idle // 4)}"]}]
