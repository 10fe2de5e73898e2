"""`invoke grade`: every submission re-analysed and re-checked, from nothing but its captures.

The grader never trusts a submission: not its verdicts (each answer is checked again,
by the same checkers the notebooks use, on the capture it was about), not its cached
outputs (there are none: captures are analysed here), not its claim of who made the
captures (lab.course.identity checks them against the student's variant). An answer
counts only when it is right and its capture is the student's.

Out of one folder of archives come, in the output folder and nowhere else:
``grades.csv`` (a row an answer: student, exercise, answer, correct, feedback),
``students.csv`` (a row a student, a column an exercise: what an LMS imports),
``report.txt`` (which exercises most students missed, and the answers they gave) and
``work/NNNN/STUDENT/`` (each archive's captures as unpacked, for a second look; NNNN the
archive's place in the folder, never a name taken from the archive).

Nothing one archive does reaches another: whatever stops its worker is one line naming
it. The run is written to a fresh folder and put in place whole, so a run that fails
never leaves the last run's files looking current. What a student wrote reaches no
spreadsheet as a formula and no terminal as an escape (``cell``, ``printable``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from lab.course import archive, identity
from lab.course.variant import Course, check_id
from lab.errors import LabError
from lab.inspect.lab_port import port_of_connections

CAPTURE_SUFFIXES = (".pcapng", ".pcap")
CHECKERS = ("Exercises", "Dynamics", "OverlayExercises")


@dataclasses.dataclass
class Row:
    student: str
    exercise: str
    answer: str
    correct: bool
    feedback: str


@dataclasses.dataclass
class Graded:
    """One submission's result: its one-line verdict, and its rows when it could be graded."""

    archive: str
    student: str
    verdict: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    made: str = ""
    accepted: bool = False


def grade_all(folder: Path, roster: list[str], course: Course, out: Path, workers: int | None = None,
              progress=None) -> list[Graded]:
    """Grade every *.zip in ``folder`` into ``out``; the results, newest submission of each student last."""
    if not folder.is_dir():
        raise LabError(f"no folder {folder}: name the folder that holds the submissions (*.zip)")
    archives = sorted(path for path in folder.iterdir() if path.suffix == ".zip")
    if not archives:
        raise LabError(f"no submission (*.zip) in {folder}")
    _check_output_folder(out)
    # The run writes into a fresh folder beside ``out`` and puts it in place only when it is
    # whole: a run that fails half way never leaves the last run's CSVs looking current.
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        (fresh / OUTPUT_MARK).write_text("made by invoke grade: the next grading replaces this folder whole\n")
        work = fresh / "work"
        work.mkdir()
        results = []
        workers = workers or os.cpu_count() or 1
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(grade_one, path, roster, course, work / f"{number:04d}"): path
                       for number, path in enumerate(archives, 1)}
            for future in concurrent.futures.as_completed(futures):
                results.append(_result_of(future, futures[future]))
                if progress:
                    progress(results[-1])
        results.sort(key=lambda graded: (graded.student, graded.made, graded.archive))
        write_outputs(results, roster, fresh)
        _put_in_place(fresh, out)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return results


def _result_of(future, path: Path) -> Graded:
    """A grading's result; whatever one archive did to its worker (a JSON nested 100,000 deep,
    memory, a crash) is one line naming that archive, and the others are graded."""
    try:
        return future.result()
    except (Exception, concurrent.futures.process.BrokenProcessPool) as error:   # noqa: B902 - one archive's fault
        reason = str(error).splitlines()[0][:120] if str(error) else ""
        return Graded(shown_name(path.name), "?", f"not graded: {type(error).__name__}" + (f" ({reason})" if reason else ""))


OUTPUT_MARK = ".tcplab-grades"


def _check_output_folder(out: Path) -> None:
    """The output folder is replaced whole, so it must be new, empty, or one a grading made."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise LabError(f"{out} is not a folder: give --out a new folder for the grades")
    if out.is_dir() and any(out.iterdir()) and not (out / OUTPUT_MARK).is_file():
        raise LabError(f"{out} holds files a grading did not write, and a grading replaces its output folder "
                       "whole: give --out a new or empty folder")


def _put_in_place(fresh: Path, out: Path) -> None:
    """Replace ``out`` by ``fresh`` in two renames: the old results stay whole until the new are."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    fresh.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def grade_one(path: Path, roster: list[str], course: Course, work: Path) -> Graded:
    """One archive, its files unpacked in ``work`` (a folder of its own, named by the grader, not
    by the archive): its verdict and rows. Anything the archive holds ends in a verdict; what
    escapes even that (a RecursionError, memory) is caught by grade_all, per archive."""
    try:
        submission = archive.read(path)
    except archive.SubmissionError as error:
        return Graded(shown_name(path.name), "?", f"rejected: {error}")
    try:
        student = check_id(submission.student)
    except LabError:
        return Graded(shown_name(path.name), "?", "rejected: its student id is not usable")
    if student not in roster:
        return Graded(shown_name(path.name), student, f"rejected: {student} is not on the roster")
    if submission.course != course.name:
        return Graded(shown_name(path.name), student, f"rejected: made for course {submission.course[:40]!r}, "
                                          f"not {course.name}")
    variant = course.variant(student)
    folder = work / student
    folder.mkdir(parents=True)
    for name, data in submission.files.items():
        (folder / name).write_bytes(data)
    whose = identity.roster_lookup(course, roster)
    captures = {name: _capture_identity(folder / name, name, variant, whose)
                for name in submission.files if name.endswith(CAPTURE_SUFFIXES)}
    rows = _check_answers(submission, student, folder, captures)
    theirs = sum(1 for verdict in captures.values() if verdict.yours)
    right = sum(row.correct for row in rows)
    not_theirs = [f"{name}: {verdict.reason}" for name, verdict in captures.items() if not verdict.yours]
    verdict = (f"graded: {right} of {len(rows)} answers right; {theirs} of {len(captures)} captures theirs"
               + (f" ({'; '.join(not_theirs)})" if not_theirs else ""))
    return Graded(shown_name(path.name), student, verdict, rows, made=submission.made, accepted=True)


def _capture_identity(path: Path, name: str, variant, whose) -> identity.Identity:
    from lab.inspect.analysis import analyze

    try:
        capture = analyze(path, keep=True)
        if not capture.connections:              # a capture under an overlay: the lab's TCP is inside VXLAN
            from lab.inspect.overlay import analyze_inner

            capture = analyze_inner(path)
    except (LabError, OSError) as error:
        return identity.Identity(False, (identity.Evidence("file", False, f"not a readable capture: {error}"),))
    return identity.judge(capture, name, variant, port_of_connections(capture.connections), whose)


def _check_answers(submission, student: str, folder: Path, captures: dict) -> list[Row]:
    """The last answer to each exercise about each capture, checked again."""
    last: dict[tuple[str, str], dict] = {}
    for entry in submission.answers:
        last[(entry["exercise"], entry["capture"])] = entry
    checkers: dict = {}
    rows = []
    for (exercise, capture), entry in sorted(last.items()):
        answer = json.dumps(entry.get("answer"))[:200]
        correct, feedback = _check(entry, folder, captures, checkers)
        rows.append(Row(student, exercise, answer, correct, feedback))
    return rows


def _check(entry: dict, folder: Path, captures: dict, checkers: dict) -> tuple[bool, str]:
    capture = entry["capture"]
    if capture not in captures:
        return False, f"its capture {capture[:60]} is not in the submission"
    verdict_of_capture = captures[capture]
    checker = _checker(entry, folder / capture, checkers)
    if isinstance(checker, str):
        return False, checker
    try:
        verdict = checker.verdict(entry["exercise"], entry.get("answer"))
    except KeyError:
        return False, f"no exercise {entry['exercise'][:60]!r}"
    except Exception as error:           # an answer of a form no checker foresaw: graded wrong, said why
        return False, f"could not check this answer ({type(error).__name__})"
    message = verdict.message.split(": ", 1)[-1]
    if not verdict_of_capture.yours:
        return False, f"{capture} is not this student's: {verdict_of_capture.reason}"
    return bool(verdict.ok), message


def _checker(entry: dict, path: Path, made: dict):
    """The checker the notebook used, made again; or a string saying why it cannot be."""
    from lab.teach.dynamics import Dynamics
    from lab.teach.exercises import Exercises
    from lab.teach.notebook import CaptureMismatch
    from lab.teach.overlay import OverlayExercises

    kind, options = entry["checker"], entry.get("options") or {}
    if kind not in CHECKERS:
        return f"no checker {kind[:40]!r}"
    bulk, stream = options.get("bulk", False), options.get("stream")
    if not isinstance(bulk, bool) or not (stream is None or (isinstance(stream, int) and 0 <= stream < 100_000)):
        return "its checker's options are not of the right form"
    key = (kind, str(path), bulk, stream)
    if key not in made:
        try:
            made[key] = (Dynamics(path, bulk=bulk) if kind == "Dynamics" else OverlayExercises(path)
                         if kind == "OverlayExercises" else Exercises(path, bulk=bulk, stream=stream))
        except (CaptureMismatch, LabError, OSError, IndexError) as error:
            made[key] = f"its capture cannot be studied: {str(error)[:120]}"
    return made[key]


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ would be run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text with its control characters shown as escapes (\\x1b for ESC): what a student wrote
    never moves a terminal's cursor, sets its title or clears it, in report.txt or on screen."""
    return _CONTROL.sub(lambda found: found[0].encode("unicode_escape").decode(), text)


def shown_name(name: str) -> str:
    return printable(name)


def write_outputs(results: list[Graded], roster: list[str], out: Path) -> None:
    latest = {graded.student: graded for graded in results if graded.accepted}    # sorted: the newest last
    exercises = sorted({row.exercise for graded in latest.values() for row in graded.rows})
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["student", "exercise", "answer", "correct", "feedback"])
        for graded in latest.values():
            for row in graded.rows:
                writer.writerow([cell(row.student), cell(row.exercise), cell(row.answer), int(row.correct),
                                 cell(row.feedback)])
    with open(out / "students.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["student", "submitted", "right", *map(cell, exercises)])     # names came from archives
        for student in roster:
            graded = latest.get(student)
            marks = {row.exercise: int(row.correct) for row in graded.rows} if graded else {}
            writer.writerow([cell(student), int(graded is not None), sum(marks.values()),
                             *[marks.get(exercise, "") for exercise in exercises]])
    (out / "report.txt").write_text(printable_lines(class_report(results, roster, latest, exercises)),
                                    encoding="utf-8")


def cell(text: str) -> str:
    """A CSV cell safe in a spreadsheet and in a terminal: no formula, no control character."""
    return spreadsheet_safe(printable(str(text)))


def printable_lines(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))


def class_report(results: list[Graded], roster: list[str], latest: dict, exercises: list[str]) -> str:
    """Plain text (a student's answer is never markup): who submitted, which exercises were
    missed most, and the wrong answers given most."""
    lines = [f"{len(latest)} of {len(roster)} students graded; {len(results)} archives read"]
    rejected = [graded for graded in results if not graded.accepted]
    if rejected:
        lines.append(f"{len(rejected)} archives rejected:")
        lines += [f"  {graded.archive}: {graded.verdict}" for graded in rejected]
    missing = [student for student in roster if student not in latest]
    if missing:
        lines.append(f"no submission from: {', '.join(missing)}")
    lines.append("")
    lines.append("exercises, most missed first (missed = answered wrong, or about a capture not theirs):")
    tally = []
    for exercise in exercises:
        rows = [row for graded in latest.values() for row in graded.rows if row.exercise == exercise]
        wrong = [row for row in rows if not row.correct]
        tally.append((len(wrong) / len(rows), exercise, rows, wrong))
    for share, exercise, rows, wrong in sorted(tally, key=lambda item: (-item[0], item[1])):
        common = collections.Counter(row.answer for row in wrong).most_common(3)
        given = "; ".join(f"{answer} ({count})" for answer, count in common)
        lines.append(f"  {exercise}: {len(wrong)} of {len(rows)} missed ({share:.0%})"
                     + (f"; wrong answers given: {given}" if given else ""))
    return "\n".join(lines) + "\n"
