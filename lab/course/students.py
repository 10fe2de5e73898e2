"""Who a student is: one rule for ids, shared by `student`, `grade` and `class up`, and rosters as LMSs give them.

An id is what the course calls the student: a login (``alice``), an email
(``alice@uni.edu``), a name in any script (``zoë``). Two spellings that differ only
in case or in how Unicode composes them are the same student (:func:`canonical`),
so ``Alice`` on the roster and ``alice`` typed by the student meet. An id never goes
raw into a file or a lab name: :func:`file_part` gives a short ASCII name, with a
digest of the id when the id is not already one, so two ids never share it.

A roster is read as an LMS exports it: a CSV with a header (Canvas's gradebook,
Moodle's, or any with an ``id``, ``login``, ``username`` or ``email`` column), or one
id a line. Every bad row is reported at once, in one message, so an instructor fixes
the file in one go.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import re
import unicodedata
from pathlib import Path

from lab.course.small_files import read_small
from lab.errors import LabError

ID_RULE = re.compile(r"[^\W_][\w.@+'-]{0,127}")
ID_HELP = ("use up to 128 letters (of any script), digits, '.', '_', '-', '@', '+' or \"'\", starting with a "
           "letter or digit (an email or a login is fine)")
MAX_ROSTER_BYTES = 8 << 20
MAX_FILE_PART = 24

# The column that names the student, in the order we look for it: Canvas's gradebook has
# "SIS Login ID" (and "ID", Canvas's own number, which its submission downloads carry);
# Moodle's has "Username" or "Email address" and "ID number".
ID_COLUMNS = ("sis login id", "login", "username", "student id", "id", "email", "email address", "id number",
              "sis user id")
NAME_COLUMNS = ("name", "student", "full name")
EMAIL_COLUMNS = ("email", "email address")


def check_id(student: object) -> str:
    """A student id, normalised (NFC, surrounding spaces gone), if usable; else a LabError."""
    text = unicodedata.normalize("NFC", student.strip()) if isinstance(student, str) else ""
    if not ID_RULE.fullmatch(text):
        raise LabError(f"student id {str(student)[:80]!r} is not usable: {ID_HELP}")
    return text


def canonical(student: str) -> str:
    """The id two spellings of one student share: NFC, case folded (``Alice`` is ``alice``)."""
    return unicodedata.normalize("NFC", check_id(student).casefold())


def file_part(student: str) -> str:
    """A short ASCII name for this student in file and lab names: the id itself when it is
    one already (``alice``), else its letters and digits and a digest of the whole id
    (``zoe-3f9a2c``, ``alice-uni-edu-81be0d``), so that no two ids share it."""
    key = canonical(student)
    plain = re.sub(r"[^a-z0-9]+", "-", unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode())
    plain = plain.strip("-")[:MAX_FILE_PART - 7].strip("-")
    if plain == key:
        return plain
    digest = hashlib.sha256(key.encode()).hexdigest()[:6]
    return f"{plain}-{digest}" if plain else f"id-{digest}"


def lab_name(group: str, student: str, limit: int = 31) -> str:
    """The lab of ``student`` in class ``group``: ``group-PART``, cut (and made unique by a
    digest) to Docker's and the lab's ``limit``."""
    part = file_part(student)
    if len(group) + 1 + len(part) <= limit:
        return f"{group}-{part}"
    digest = hashlib.sha256(canonical(student).encode()).hexdigest()[:6]
    room = limit - len(group) - 8
    if room < 1:
        raise LabError(f"class name {group!r} is too long for a lab per student: use at most {limit - 9} characters")
    return f"{group}-{part[:room].strip('-') or 'id'}-{digest}"


@dataclasses.dataclass(frozen=True)
class Student:
    """One roster row: the id the lab uses, and what else the LMS gave that finds them."""

    id: str
    name: str = ""
    email: str = ""
    lms_id: str = ""           # Canvas's own user number (its "ID" column), which its downloads carry

    @property
    def key(self) -> str:
        return canonical(self.id)


@dataclasses.dataclass(frozen=True)
class Roster:
    """The class, in the roster's order, found by any spelling of an id."""

    students: tuple[Student, ...]

    @classmethod
    def of(cls, ids: list[str]) -> "Roster":
        return cls(tuple(Student(check_id(student)) for student in ids))

    @property
    def ids(self) -> list[str]:
        return [student.id for student in self.students]

    def find(self, student: str) -> Student | None:
        """The roster's student with this id, in any case or composition, or None."""
        try:
            key = canonical(student)
        except LabError:
            return None
        return next((s for s in self.students if s.key == key), None)

    def by_lms_id(self, number: str) -> Student | None:
        return next((s for s in self.students if s.lms_id and s.lms_id == number), None)

    def by_name(self, name: str) -> list[Student]:
        wanted = _name_key(name)
        return [s for s in self.students if s.name and _name_key(s.name) == wanted]

    def __contains__(self, student: str) -> bool:
        return self.find(student) is not None

    def __iter__(self):
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.students)


def _name_key(name: str) -> str:
    """A name as LMSs vary it: "Doe, John", "John Doe" and "john  doe" are one."""
    if "," in name:
        last, first = name.split(",", 1)
        name = f"{first} {last}"
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def read_roster(path: Path) -> Roster:
    """The class from a roster file; a LabError naming every bad row at once."""
    raw = read_small(path, MAX_ROSTER_BYTES, "a roster")
    return parse_roster(raw.decode("utf-8-sig", errors="replace"), str(path))


def parse_roster(text: str, where: str = "roster") -> Roster:
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
    id_column = next((header.index(name) for name in ID_COLUMNS if name in header), None)
    if id_column is None and rows and len(rows[0][1]) > 1:
        raise LabError(f"{where}: its header names no id column: give one of "
                       f"{', '.join(repr(name) for name in ID_COLUMNS[:6])} (or one id a line)")
    column = {name: header.index(name) for name in (*NAME_COLUMNS, *EMAIL_COLUMNS, "id") if name in header}
    if "first name" in header and "last name" in header:
        column["first"], column["last"] = header.index("first name"), header.index("last name")
    body = rows[1:] if id_column is not None else rows
    students: list[Student] = []
    seen: dict[str, int] = {}
    problems: list[str] = []
    for number, row in body:
        if header and row[0].strip().lower().startswith("points possible"):
            continue                     # Canvas's second row, in a gradebook export used as a roster
        cells = [cell.strip() for cell in row]
        given = cells[id_column or 0] if len(cells) > (id_column or 0) else ""
        try:
            student = check_id(given)
        except LabError:
            problems.append(f"row {number}: id {given[:40]!r} is not usable")
            continue
        key = canonical(student)
        if key in seen:
            problems.append(f"row {number}: {student!r} is row {seen[key]}'s id again (ids differ only in case)"
                            if student != students[[s.key for s in students].index(key)].id else
                            f"row {number}: {student!r} is there twice (rows {seen[key]} and {number})")
            continue
        seen[key] = number
        students.append(Student(student, _field(cells, column, NAME_COLUMNS) or _first_last(cells, column),
                                _field(cells, column, EMAIL_COLUMNS),
                                _canvas_number(cells, column, header, id_column)))
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise LabError(f"{where}: {len(problems)} bad row{'s' if len(problems) > 1 else ''}: {shown}. {ID_HELP}")
    if not students:
        raise LabError(f"{where} names no student: one id a line, or a CSV with an 'id' column")
    return Roster(tuple(students))


def _field(cells: list[str], column: dict, names: tuple[str, ...]) -> str:
    for name in names:
        if name in column and column[name] < len(cells) and cells[column[name]]:
            return cells[column[name]][:200]
    return ""


def _first_last(cells: list[str], column: dict) -> str:
    if "first" in column and "last" in column:
        return " ".join(cells[column[part]] for part in ("first", "last") if column[part] < len(cells))[:200]
    return ""


def _canvas_number(cells: list[str], column: dict, header: list[str], id_column: int | None) -> str:
    """Canvas's own user number: its gradebook's "ID" column, when another column names the student."""
    at = column.get("id")
    if at is None or at == id_column or at >= len(cells):
        return ""
    return cells[at] if cells[at].isdigit() else ""
