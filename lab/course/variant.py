"""A course and each student's variant of it, derived, never handed out.

The instructor runs ``invoke course NAME`` once: it writes ``NAME.secret`` (kept by the
instructor, needed to grade) and ``NAME.course.toml`` (given to every student, the same
file for all). The course file holds a key derived from the secret; from the key and a
student's id, HMAC-SHA256 derives that student's variant:

* a seed, which picks each scenario's lost segment and link numbers;
* a token, which the lab appends to every ECHO line and BULK request the student sends;
* a BULK size, for the loss capture of notebook 04.

Why HMAC and not a hash of the id: without the course's key nobody can tell what a
variant will be, and two courses (or two years of one) give the same id different
variants, so last year's captures fail this year. Why a key derived from the secret
and not the secret itself: the key only derives variants; the secret stays with the
instructor. A student who has the course file can work out a classmate's variant, but
a capture made for one id fails the check under another, which is what stops copying.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import tomllib
from pathlib import Path

from lab.course.small_files import read_small
from lab.course.students import canonical, check_id
from lab.errors import LabError
from lab.paths import STUDENT_FILE, submissions_dir

COURSE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,30}")
SMALL_FILE = 1 << 20              # a course, secret or roster file is read only up to this size
BULK_BASE, BULK_SPREAD = 2_000_000, 1_000_000      # a student's BULK size: 2,000,000 to 2,999,999 bytes


@dataclasses.dataclass(frozen=True)
class Variant:
    """What one student's lab does differently from a classmate's."""

    student: str
    seed: int
    token: str
    bulk_bytes: int

    @property
    def tag(self) -> str:
        """What the lab appends to the student's ECHO lines, so each request says whose it is."""
        return f"[tcplab:{self.token}]"


@dataclasses.dataclass(frozen=True)
class Course:
    name: str
    key: bytes
    room: bytes | None = dataclasses.field(default=None, compare=False, repr=False)
    """The key of the course's room (its broker's tokens, its signatures): known from the secret only."""

    @classmethod
    def from_secret(cls, name: str, secret: bytes) -> "Course":
        return cls(name, hmac.new(secret, b"tcplab course key\0" + name.encode(), hashlib.sha256).digest(),
                   hmac.new(secret, b"tcplab room key\0" + name.encode(), hashlib.sha256).digest())

    @property
    def room_key(self) -> bytes:
        """The room's key, which only the instructor's secret gives (a course file does not)."""
        if self.room is None:
            raise LabError(f"course {self.name}: a room needs the course's secret (NAME.secret), not its course file")
        return self.room

    def _derive(self, what: str, student: str) -> int:
        digest = hmac.new(self.key, f"{what}\0{student}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def variant(self, student: str) -> Variant:
        """The variant of ``student``, the same for every spelling of the id (``Alice``, ``alice``)."""
        key = canonical(student)
        token = f"{self._derive('token', key):016x}"[:8]
        return Variant(check_id(student), 1 + self._derive("seed", key) % 999_999, token,
                       BULK_BASE + self._derive("bulk", key) % BULK_SPREAD)


def create(name: str, folder: Path, room: bool = False) -> tuple[Path, Path]:
    """A new course: (its secret file, its course file), neither overwriting anything. ``room``: its
    students work in a lab room, whose broker signs their captures, and grading requires the signatures."""
    if not COURSE_NAME.fullmatch(name):
        raise LabError(f"course name {name!r} is not usable: use up to 31 lowercase letters, digits, '-', '_' or '.'")
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    course = Course.from_secret(name, secret)
    secret_path, course_path = folder / f"{name}.secret", folder / f"{name}.course.toml"
    for path in (secret_path, course_path):
        if path.exists() or path.is_symlink():
            raise LabError(f"{path} exists: a course is made once (move it away to make a new one)")
    _write_new(secret_path, f'# The secret of course {name}: keep it, give it to nobody; grading needs it.\n'
                            f'name = "{name}"\nsecret = "{secret.hex()}"\n', mode=0o600)
    _write_new(course_path, f'# Course {name}: give this file to every student (invoke student ID --course FILE).\n'
                            f'name = "{name}"\nkey = "{course.key.hex()}"\n'
                            + ("# Its students work in a lab room: grading requires the room's signatures.\n"
                               "room = true\n" if room else ""), mode=0o644)
    return secret_path, course_path


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` (never through a link, never over a file) with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _read_toml(path: Path, what: str) -> dict:
    raw = read_small(path, SMALL_FILE, what)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise LabError(f"{path} is not {what}: {error}") from None


def _hex_field(data: dict, key: str, path: Path, what: str) -> bytes:
    try:
        value = bytes.fromhex(data[key])
        if len(value) == 32:
            return value
    except (KeyError, TypeError, ValueError):
        pass
    raise LabError(f"{path} is not {what}: it needs {key} = 64 hex digits")


def _name_field(data: dict, path: Path, what: str, key: str = "name") -> str:
    name = data.get(key)
    if not isinstance(name, str) or not COURSE_NAME.fullmatch(name):
        raise LabError(f"{path} is not {what}: it needs a {key}")
    return name


def read_course(path: Path) -> Course:
    """The course a student was given (NAME.course.toml)."""
    data = _read_toml(path, "a course file")
    return Course(_name_field(data, path, "a course file"), _hex_field(data, "key", path, "a course file"))


def course_uses_room(path: Path) -> bool:
    """Whether the course file says its students work in a room (``room = true``): then every capture
    must carry the room's signature."""
    value = _read_toml(path, "a course file").get("room", False)
    if not isinstance(value, bool):
        raise LabError(f"{path}: room must be true or false")
    return value


def read_secret(path: Path) -> Course:
    """The course, from the instructor's secret (NAME.secret)."""
    data = _read_toml(path, "a course secret")
    return Course.from_secret(_name_field(data, path, "a course secret"),
                              _hex_field(data, "secret", path, "a course secret"))


def set_student(student: str, course_path: Path) -> Variant:
    """Remember who works on this machine, for which course (submissions/student.toml)."""
    student = check_id(student)
    course = read_course(course_path)
    folder = submissions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = f'student = {json.dumps(student)}\ncourse = "{course.name}"\nkey = "{course.key.hex()}"\n'
    temporary = folder / f".{STUDENT_FILE}.new"
    temporary.unlink(missing_ok=True)
    _write_new(temporary, text, mode=0o644)
    temporary.replace(folder / STUDENT_FILE)
    return course.variant(student)


def current() -> tuple[Course, Variant] | None:
    """The course and variant of the student set on this machine, or None."""
    path = submissions_dir() / STUDENT_FILE
    if not path.is_file():
        return None
    data = _read_toml(path, "a student file")
    course = Course(_name_field(data, path, "a student file", "course"),
                    _hex_field(data, "key", path, "a student file"))
    return course, course.variant(check_id(str(data.get("student", ""))))


def student_tag() -> str | None:
    """The tag of the student set on this machine (what the lab appends to their ECHO lines and
    BULK requests, lab.host.options.with_tag), or None when no student is set."""
    found = current()
    return found[1].tag if found else None
