"""Which engine answers the docker CLI, and what follows from it for a lab.

The lab speaks to every engine through the docker CLI, chosen by the CLI's own means
(``DOCKER_HOST``, a context). Behind it may be rootful Docker, rootless Docker, or
Podman through its Docker-compatible socket; Docker Desktop's and WSL2's engines are
Docker in a VM. They differ in ways a lesson feels:

* rootless on cgroup v1: ``--memory`` and ``--pids-limit`` are accepted and not
  enforced (Docker's cgroup driver is "none"); the server's own bounds still hold;
* Podman before 4.6 answers ``docker run --rm`` with exit code 0 whatever the program
  returned (it mishandles the CLI's ``wait?condition=removed``: podman issue 18889), so
  the lab runs such a container without ``--rm`` and removes it itself
  (:meth:`lab.host.engines.docker.Docker.run`).

Asked with one ``docker version`` and one ``docker info``, each once per engine and
process (:meth:`Docker.product`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

PODMAN_KEEPS_EXIT_CODES = (4, 6)     # the first Podman whose compat wait handles condition=removed


@dataclasses.dataclass(frozen=True)
class Product:
    """What an engine is; empty strings where it did not say."""

    name: str = "Docker"               # "Docker" or "Podman"
    version: str = ""
    rootless: bool = False
    cgroup_version: str = ""
    cgroup_driver: str = ""
    operating_system: str = ""         # "Docker Desktop" on macOS and Windows
    storage_driver: str = ""           # "overlay2", "overlay"; "vfs" copies the whole image per container

    @property
    def limits_hold(self) -> bool:
        """Whether --memory and --pids-limit are enforced: not without a cgroup driver, nor
        rootless on cgroup v1 (no delegation there)."""
        return self.cgroup_driver != "none" and not (self.rootless and self.cgroup_version == "1")

    @property
    def loses_exit_code_of_removed(self) -> bool:
        """Podman before 4.6: ``docker run --rm`` exits 0 whatever the container's program returned."""
        return self.name == "Podman" and version_tuple(self.version) < PODMAN_KEEPS_EXIT_CODES

    def words(self) -> str:
        """One phrase: "rootless Docker 20.10.24 (cgroup v1)", "Podman 4.3.1, rootless (cgroup v1)"."""
        where = f", {self.operating_system}" if self.operating_system == "Docker Desktop" else ""
        return (f"{'rootless ' if self.rootless else ''}{self.name} {self.version or '?'}{where}"
                + (f" (cgroup v{self.cgroup_version})" if self.cgroup_version else ""))

    def limits_warning(self) -> str | None:
        """What a learner should know when the containers' limits are not enforced, or None."""
        if self.limits_hold:
            return None
        why = ("rootless on cgroup v1" if self.rootless and self.cgroup_version == "1"
               else "the engine has no cgroup driver")
        return (f"the containers' memory and process limits are not enforced ({why}); the server's own "
                "bounds (connections per client, bytes per request, timeouts) still hold")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3]) or (0,)


def parse(version_json: str, info_json: str) -> Product:
    """A Product from ``docker version --format '{{json .Server}}'`` and ``docker info --format '{{json .}}'``."""
    server = loads(version_json)
    info = loads(info_json)
    components = server.get("Components") or []
    podman = next((c for c in components if "podman" in str(c.get("Name", "")).lower()), None)
    security = [str(option) for option in info.get("SecurityOptions") or []]
    root_dir = str(info.get("DockerRootDir") or "")
    # Docker says "name=rootless"; Podman's compat info does not, but its rootless storage
    # lives in the user's home (~/.local/share/containers), its rootful one in /var/lib.
    rootless = (any("rootless" in option for option in security)
                or (podman is not None and bool(root_dir) and not root_dir.startswith("/var/lib/")))
    return Product(name="Podman" if podman else "Docker",
                   version=str((podman or {}).get("Version") or server.get("Version") or ""),
                   rootless=rootless,
                   cgroup_version=str(info.get("CgroupVersion") or ""),
                   cgroup_driver=str(info.get("CgroupDriver") or ""),
                   operating_system=str(info.get("OperatingSystem") or ""),
                   storage_driver=str(info.get("Driver") or ""))


def loads(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
