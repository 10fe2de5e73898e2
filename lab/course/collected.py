"""Whose each archive is, and when it arrived: from where the course collected it, never from the archive.

A manifest says whose it is and when it was made, and a student writes both. What a
student cannot write is where the course put their file, so that is what decides:

* ``--map FILE``: a CSV the instructor gives, ``archive,student`` a row;
* an LMS export: Canvas's "Download Submissions" names each file
  ``doejohn_12345_67890_NAME.zip`` (``doejohn_late_...`` when late), where 12345 is the
  student's Canvas number (the ``ID`` column of its gradebook export, given as the
  roster); Moodle's "Download all submissions" puts each student's files in a folder
  ``Full Name_12345_assignsubmission_file_``, matched to the roster's names;
* a folder per student: ``inbox/alice/anything.zip``.

Only when none of these applies is the manifest believed, and the report says so.
An archive arrived when its file was last written: an LMS download keeps the time
the student handed it in. Links are never followed: an archive or folder that is a
link is read (and refused) as what it is, not as what it points to.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import re
from pathlib import Path

from lab.course.small_files import read_small
from lab.course.students import Roster, Student
from lab.errors import LabError

CANVAS_FILE = re.compile(r"(?P<name>[a-z0-9-]+?)(?P<late>_late)?_(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)")
MOODLE_FOLDER = re.compile(r"(?P<name>.+)_(?P<participant>\d+)_assignsubmission_file_?")
MAX_ARCHIVES = 5_000
MAX_MAP_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class Collected:
    """One archive as the course collected it."""

    path: Path
    shown: str                       # its name as the report shows it (folder/file for one in a folder)
    arrived: str                     # ISO time, UTC
    student: str | None = None       # the roster id the collection says, or None: the manifest decides
    how: str = ""                    # "Canvas download", "Moodle folder", "folder alice/", "--map", ""
    problem: str = ""                # why the collection names nobody (a finding, the archive is not graded)
    marked_late: bool = False        # the LMS marked it late


def find(folder: Path, roster: Roster, mapping: dict[str, str] | None = None) -> list[Collected]:
    """Every *.zip in ``folder`` and in its folders one level down, with whose it is and when it came."""
    if not folder.is_dir() or folder.is_symlink():
        raise LabError(f"no folder {folder}: name the folder that holds the submissions (*.zip)")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            found += [_collected(path, roster, mapping, entry.name) for path in sorted(entry.iterdir())
                      if path.name.endswith(".zip")]
        elif entry.name.endswith(".zip"):
            found.append(_collected(entry, roster, mapping, None))
        if len(found) > MAX_ARCHIVES:
            raise LabError(f"more than {MAX_ARCHIVES:,} archives in {folder}: grade a class at a time")
    if not found:
        raise LabError(f"no submission (*.zip) in {folder} or in its folders")
    return found


def _collected(path: Path, roster: Roster, mapping: dict[str, str] | None, parent: str | None) -> Collected:
    shown = f"{parent}/{path.name}" if parent else path.name
    arrived = _arrival(path)
    if mapping is not None:
        named = mapping.get(shown) or mapping.get(path.name)
        if named is None:
            return Collected(path, shown, arrived, problem="not in the --map file: whose it is is unknown")
        student = roster.find(named)
        return (Collected(path, shown, arrived, student.id, "--map") if student else
                Collected(path, shown, arrived, problem=f"--map names {named[:40]!r}, who is not on the roster"))
    canvas = CANVAS_FILE.fullmatch(path.name) if parent is None else None
    if canvas:
        student = roster.by_lms_id(canvas["user"])
        late = bool(canvas["late"])
        if student:
            return Collected(path, shown, arrived, student.id, f"Canvas download (user {canvas['user']})",
                             marked_late=late)
        return Collected(path, shown, arrived, marked_late=late,
                         problem=f"a Canvas download of user {canvas['user']}, who is not on the roster "
                                 "(give Canvas's gradebook export, with its ID column, as the roster)")
    if parent is not None:
        return _in_folder(path, shown, arrived, roster, parent)
    return Collected(path, shown, arrived)


def _in_folder(path: Path, shown: str, arrived: str, roster: Roster, parent: str) -> Collected:
    moodle = MOODLE_FOLDER.fullmatch(parent)
    if moodle:
        named: list[Student] = roster.by_name(moodle["name"])
        if len(named) == 1:
            return Collected(path, shown, arrived, named[0].id, f"Moodle folder ({moodle['name']})")
        why = "nobody on the roster" if not named else f"{len(named)} students of the roster"
        return Collected(path, shown, arrived, problem=f"a Moodle folder of {moodle['name']!r}, the name of {why} "
                                                       "(give --map archive,student)")
    student = roster.find(parent)
    if student:
        return Collected(path, shown, arrived, student.id, f"folder {parent}/")
    return Collected(path, shown, arrived, problem=f"in folder {parent}/, and {parent!r} is not on the roster")


def _arrival(path: Path) -> str:
    try:
        seconds = path.lstat().st_mtime
    except OSError:
        seconds = 0.0
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")


def read_map(path: Path) -> dict[str, str]:
    """``archive,student`` rows (a header row ``archive,student`` may come first)."""
    text = read_small(path, MAX_MAP_BYTES, "a --map file").decode("utf-8-sig", errors="replace")
    mapping: dict[str, str] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0] or cells[0].startswith("#") or cells[:2] == ["archive", "student"]:
            continue
        if len(cells) < 2 or not cells[1]:
            raise LabError(f"--map {path}, row {number}: give archive,student")
        if cells[0] in mapping:
            raise LabError(f"--map {path}, row {number}: {cells[0][:60]!r} is mapped twice")
        mapping[cells[0]] = cells[1]
    return mapping


def parse_deadline(text: str) -> datetime.datetime:
    """``2026-12-01T23:59`` (UTC unless it says otherwise, as ``+01:00``)."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise LabError(f"--deadline {text[:40]!r} is not a time: give it as 2026-12-01T23:59 (UTC) "
                       "or 2026-12-01T23:59+01:00") from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
