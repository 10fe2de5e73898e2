"""A room as data: the names of everything it makes, its ports, its limits, its passwords.

Every container, network and volume of a room carries ``org.tcplab.room=ROOM`` (and a role),
by which `room status` and `room down` find them: all of them, and nothing else. A student's
things are named from their lab's name (``ROOM-ID``, made by lab.course.students.lab_name):
``LAB-jupyter`` (their JupyterLab), ``LAB-room`` (its network), ``LAB-work`` (their files);
the lab itself (``LAB-server``, ``LAB-client``, ``LAB-net``) is an ordinary lab the broker runs.
"""

from __future__ import annotations

import hashlib
import secrets

ROOM_LABEL = "org.tcplab.room"
ROLE_LABEL = "org.tcplab.role"
HUB_PORT = 8000                  # the hub's proxy, inside its container (published on the room's --port)
BROKER_PORT = 7077
WORKSPACE = "/home/student"
STUDENT_MEMORY = "1g"            # a JupyterLab with a kernel that plots: about 300 MB; room for two kernels
STUDENT_PIDS = 256
IDLE_SECONDS = 3600              # a JupyterLab nobody used for an hour is stopped (its files stay)
IMAGE_REPO, HUB_IMAGE_REPO = "tcplab/room", "tcplab/room-hub"


def labels(room: str, role: str) -> dict[str, str]:
    return {ROOM_LABEL: room, ROLE_LABEL: f"room-{role}"}


def hub_container(room: str) -> str:
    return f"tcplab-room-{room}-hub"


def broker_container(room: str) -> str:
    return f"tcplab-room-{room}-broker"


def front_network(room: str) -> str:
    """The network the hub publishes its port from (the students' browsers come in there)."""
    return f"tcplab-room-{room}-front"


def data_volume(room: str) -> str:
    """The hub's database and the broker's folder: the students' captures as the broker made them, its log."""
    return f"tcplab-room-{room}-data"


def jupyter_container(lab: str) -> str:
    return f"{lab}-jupyter"


def student_network(lab: str) -> str:
    return f"{lab}-room"


def work_volume(lab: str) -> str:
    return f"{lab}-work"


def image(room: str) -> str:
    return f"{IMAGE_REPO}:{room}"


def hub_image(room: str) -> str:
    return f"{HUB_IMAGE_REPO}:{room}"


def memory_bytes(text: str) -> int:
    """``1g``, ``512m``, ``800000k`` or a number of bytes, as bytes (what the spawner's limit takes)."""
    text = str(text).strip().lower()
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or not (64 << 20) <= int(digits) * scale <= (64 << 30):
        raise ValueError(f"memory {text[:20]!r}: give 64m to 64g, e.g. 1g or 512m")
    return int(digits) * scale


def new_password() -> str:
    """A password a student can type: 12 letters and digits, no look-alikes (0/O, 1/l/I)."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def hash_password(password: str) -> str:
    """``scrypt$SALT$HASH``: what the hub keeps (lab.host.room.hub.password_matches checks it)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"
