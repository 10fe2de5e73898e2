"""What a grading writes: the CSVs an LMS imports, the report an instructor acts on, a feedback file a student.

Every file is written from the same rows, so the verdict lines, the CSVs and the
report agree. Every cell is safe in a spreadsheet (:func:`cell`: no formula, no
control character); every line of text is safe on a terminal (:func:`printable`).

* ``grades.csv``: a row an answer that counts (student, exercise, capture, answer,
  correct, points, feedback);
* ``students.csv``: a row a student of the roster, a column an exercise of the course;
* ``canvas.csv``: Canvas's gradebook import (Grades > Import): Student, ID, SIS User ID,
  SIS Login ID, Section and one new assignment column, ``tcplab COURSE``, of points;
* ``moodle.csv``: Moodle's grade import (Grades > Import > CSV file): a row a student,
  identified by ``Username`` or ``Email address``, the total and each exercise's points;
* ``variants.csv``: each student's seed, token, BULK size and lab name, for the instructor;
* ``feedback/PART.txt``: each student's answers, what was right, and why not;
* ``report.txt``: who submitted, the suspicions (copies, captures not the student's,
  kernel files that disagree with their captures, impersonation, superseded and late
  archives), and which exercises most students missed.
"""

from __future__ import annotations

import collections
import csv
import re
import textwrap
from pathlib import Path

from lab.course.results import Graded, Grading
from lab.course.students import Roster, file_part, lab_name

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ would be run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def printable(text: str) -> str:
    """Text with its control characters shown as escapes (\\x1b for ESC): what a student wrote
    never moves a terminal's cursor, sets its title or clears it, in report.txt or on screen."""
    return _CONTROL.sub(lambda found: found[0].encode("unicode_escape").decode(), text)


def cell(value: object) -> str:
    """A CSV cell safe in a spreadsheet and in a terminal: no formula, no control character."""
    return spreadsheet_safe(printable(str(value)))


def number(value: float) -> str:
    return f"{value:g}"


def write_all(grading: Grading, out: Path) -> None:
    _grades_csv(grading, out / "grades.csv")
    _students_csv(grading, out / "students.csv")
    _canvas_csv(grading, out / "canvas.csv")
    _moodle_csv(grading, out / "moodle.csv")
    _variants_csv(grading, out / "variants.csv")
    feedback = out / "feedback"
    feedback.mkdir()
    for student, graded in grading.latest.items():
        (feedback / f"{file_part(student)}.txt").write_text(printable_lines(feedback_text(grading, graded)),
                                                              encoding="utf-8")
    (out / "report.txt").write_text(printable_lines(report(grading)), encoding="utf-8")


def _rows(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([cell(name) for name in header])
        for row in rows:
            writer.writerow([cell(value) for value in row])


def _grades_csv(grading: Grading, path: Path) -> None:
    _rows(path, ["student", "exercise", "capture", "answer", "correct", "points", "feedback"],
          ([row.student, row.exercise, row.capture, row.answer, int(row.correct), number(row.points), row.feedback]
           for graded in grading.latest.values() for row in graded.rows))


def _students_csv(grading: Grading, path: Path) -> None:
    exercises = grading.columns
    rows = []
    for student in grading.roster.students:
        graded = grading.latest.get(student.id)
        marks = grading.marks(student.id)
        rows.append([student.id, student.name, int(graded is not None), int(bool(graded and graded.late)),
                     grading.right(student.id), number(grading.points(student.id)), number(grading.possible),
                     len(grading.suspicions_of(student.id)), *[marks.get(exercise, "") for exercise in exercises]])
    _rows(path, ["student", "name", "submitted", "late", "right", "points", "possible", "suspicions", *exercises],
          rows)


def _canvas_csv(grading: Grading, path: Path) -> None:
    title = f"tcplab {grading.course.name}"
    _rows(path, ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title],
          ([student.name or student.id, student.lms_id, "", student.id, "", number(grading.points(student.id))]
           for student in grading.roster.students))


def _moodle_csv(grading: Grading, path: Path) -> None:
    exercises = grading.columns
    rows = []
    for student in grading.roster.students:
        marks = grading.marks(student.id)
        rows.append([student.id, student.email, student.name, number(grading.points(student.id)),
                     *[marks.get(exercise, "0") for exercise in exercises]])
    _rows(path, ["Username", "Email address", "Full name", f"tcplab {grading.course.name} total", *exercises], rows)


def _variants_csv(grading: Grading, path: Path) -> None:
    rows = []
    for student in grading.roster.students:
        variant = grading.course.variant(student.id)
        rows.append([student.id, student.name, variant.seed, variant.token, variant.bulk_bytes,
                     lab_name("class", student.id)])
    _rows(path, ["student", "name", "seed", "token", "bulk bytes", "lab (invoke class up --roster)"], rows)


def printable_lines(text: str, width: int = 80) -> str:
    """Lines a terminal shows as they are (no escapes), wrapped at ``width`` with their indent kept."""
    lines = []
    for line in text.split("\n"):
        line = printable(line)
        indent = " " * (len(line) - len(line.lstrip(" ")))
        lines += textwrap.wrap(line, width, initial_indent="", subsequent_indent=indent + "    ",
                               break_long_words=False, break_on_hyphens=False) or [""]
    return "\n".join(lines)


def feedback_text(grading: Grading, graded: Graded) -> str:
    """What one student gets back: every answer that counted, right or not and why, and the suspicions."""
    lines = [f"{graded.student}: {grading.right(graded.student)} of {len(graded.rows)} answers right, "
             f"{number(grading.points(graded.student))} of {number(grading.possible)} points",
             f"graded from {graded.archive}, which arrived {graded.arrived}" + (" (late)" if graded.late else ""), ""]
    for row in graded.rows:
        mark = "right" if row.correct else "not counted"
        lines.append(f"{row.exercise} (about {row.capture}): {mark}; you answered {row.answer}")
        if row.feedback and not row.correct:
            lines.append(f"    {row.feedback}")
    own = grading.suspicions_of(graded.student)
    if own:
        lines += ["", "to talk over with your instructor:"] + [f"  {said}" for said in own]
    return "\n".join(lines) + "\n"


def report(grading: Grading) -> str:
    """Plain text (a student's answer is never markup): who submitted, the suspicions, and
    which exercises were missed most, with the wrong answers given most."""
    roster: Roster = grading.roster
    latest = grading.latest
    lines = [f"{len(latest)} of {len(roster)} students graded; {len(grading.results)} archives read",
             "which archive counts: the last to arrive of each student's (by when the course received it, "
             "never by what the archive says); which answer counts: the last one recorded for each exercise",
             grading.late_policy]
    believed = [graded for graded in grading.results if graded.accepted and not graded.how]
    if believed:
        lines.append(f"{len(believed)} archives came with nothing that says who handed them in (no LMS export "
                     "folder or file name, no --map): their manifests were believed")
    rejected = [graded for graded in grading.results if not graded.accepted]
    if rejected:
        lines.append(f"{len(rejected)} archives not graded:")
        lines += [f"  {graded.archive}: {graded.verdict}" for graded in rejected]
    missing = [student for student in roster.ids if student not in latest]
    if missing:
        lines.append(f"no submission from: {', '.join(missing)}")
    lines += ["", "suspicions (each student's feedback file has theirs):"]
    said = grading.suspicions()
    lines += [f"  {line}" for line in said] if said else ["  none"]
    lines += ["", "exercises, most missed first (missed = answered wrong, or not counted):"]
    tally = []
    for exercise in grading.columns:
        rows = [row for graded in latest.values() for row in graded.rows if row.exercise == exercise]
        if not rows:
            continue
        wrong = [row for row in rows if not row.correct]
        tally.append((len(wrong) / len(rows), exercise, rows, wrong))
    for share, exercise, rows, wrong in sorted(tally, key=lambda item: (-item[0], item[1])):
        common = collections.Counter(row.answer for row in wrong).most_common(3)
        given = "; ".join(f"{answer} ({count})" for answer, count in common)
        lines.append(f"  {exercise}: {len(wrong)} of {len(rows)} missed ({share:.0%})"
                     + (f"; wrong answers given: {given}" if given else ""))
    return "\n".join(lines) + "\n"
