"""`invoke grade`: every submission re-analysed and re-checked, from nothing but its captures.

The grader never trusts a submission: not its verdicts (each answer is checked again,
by the same checkers the notebooks use, on the capture it was about), not its cached
outputs (there are none: captures are analysed here), not its claim of who made it or
when (lab.course.collected: where the course collected it says whose it is, and
when it arrived), not its captures (lab.course.identity checks them against the
student's variant, lab.course.copies against every classmate's), not its kernel
files (lab.course.kernel_agreement checks them against their captures). An answer
counts only when it is right, its capture is the student's and no classmate's, and
the kernel file it rests on agrees with the packets.

Two rules decide what counts, and the report states both: of a student's archives,
the last to arrive; of the answers in it to one exercise, the last recorded.

Nothing one archive does reaches another: whatever stops its worker is one line naming
it; a capture over MAX_CAPTURE_FRAMES frames or MAX_CAPTURE_CONNECTIONS connections
(no lesson's capture comes near either) is refused before its analysis costs memory,
and each worker's memory is capped, so what escapes is one line too. The run is
written to a fresh folder and put in place whole. What the output holds is described
in lab.course.gradebook.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lab.course import archive, collected, copies, gradebook, identity
from lab.course.results import Graded, Grading, Row, course_exercises
from lab.course.students import Roster, canonical, file_part
from lab.course.variant import Course
from lab.errors import LabError
from lab.inspect.lab_port import port_of_connections

CAPTURE_SUFFIXES = (".pcapng", ".pcap")
CHECKERS = ("Exercises", "Dynamics", "OverlayExercises")
MAX_CAPTURE_FRAMES = 100_000
MAX_CAPTURE_CONNECTIONS = 1_000
WORKER_MEMORY_BYTES = 1 << 30
OUTPUT_MARK = ".tcplab-grades"
RESULTS = "results.json"


def grade_all(folder: Path, roster: Roster | list[str], course: Course, out: Path, workers: int | None = None,
              progress=None, weights: dict[str, float] | None = None, deadline: datetime.datetime | None = None,
              mapping: dict[str, str] | None = None, only: str | None = None, signed: bool = False) -> Grading:
    """Grade the archives in ``folder`` (and its folders, as LMSs export them) into ``out``.

    ``only``: grade again that student's archives alone, the others' results kept from
    the last run in ``out``. ``signed``: the course's room made the captures (the course
    file says ``room = true``), so a capture without the room's intact signature is not the student's."""
    if signed and course.room is None:
        raise LabError("checking the room's signatures needs the course's secret (--secret NAME.secret)")
    roster = roster if isinstance(roster, Roster) else Roster.of(list(roster))
    found = collected.find(folder, roster, mapping)
    _check_output_folder(out)
    numbered = list(enumerate(found, 1))
    kept: list[Graded] = []
    if only is not None:
        student = roster.find(only)
        if student is None:
            raise LabError(f"--only {only[:40]!r}: nobody of that id is on the roster")
        kept, numbered = _regrade_only(out, student.id, numbered)
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        (fresh / OUTPUT_MARK).write_text("made by invoke grade: the next grading replaces this folder whole\n")
        work = fresh / "work"
        work.mkdir()
        if only is not None and (out / "work").is_dir():
            _keep_work(out / "work", work, {number for number, _ in numbered})
        results = list(kept)
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                                    initializer=_bound_memory) as pool:
            futures = {pool.submit(grade_one, item, roster, course, work / f"{number:04d}", signed): item
                       for number, item in numbered}
            for future in concurrent.futures.as_completed(futures):
                results.append(_result_of(future, futures[future], deadline))
                if progress:
                    progress(results[-1])
        (fresh / RESULTS).write_text(json.dumps([dataclasses.asdict(graded) for graded in results]))
        grading = Grading(results, roster, course, _weights(weights, results), deadline)
        gradebook.write_all(grading, fresh)
        _put_in_place(fresh, out)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return grading


def _weights(given: dict[str, float] | None, results: list[Graded]) -> dict[str, float]:
    """The course's exercises and their points: the course file's [points], else one point for
    each exercise of the lab that someone answered."""
    if given:
        return dict(given)
    answered = {row.exercise for graded in results for row in graded.rows}
    return {exercise: 1.0 for exercise in course_exercises() if exercise in answered}


def _regrade_only(out: Path, student: str, numbered: list) -> tuple[list[Graded], list]:
    """The last run's results of everyone else, and the archives to grade again."""
    try:
        data = json.loads((out / RESULTS).read_text(encoding="utf-8"))
        last = [Graded(**{**entry, "rows": [Row(**row) for row in entry["rows"]]}) for entry in data]
    except (OSError, ValueError, TypeError, KeyError):
        raise LabError(f"--only needs a whole grading in {out} first (its {RESULTS} is missing or unreadable): "
                       "run invoke grade without --only") from None
    key = canonical(student)
    theirs = {graded.archive for graded in last if graded.student != "?" and canonical(graded.student) == key}
    known = {graded.archive for graded in last}
    again = [(number, item) for number, item in numbered
             if (item.student is not None and canonical(item.student) == key)
             or (item.student is None and (gradebook.printable(item.shown) in theirs
                                           or gradebook.printable(item.shown) not in known))]
    shown = {gradebook.printable(item.shown) for _, item in again}
    return [graded for graded in last if graded.archive not in shown], again


def _keep_work(old: Path, new: Path, regraded: set[int]) -> None:
    """The last run's unpacked archives, but for those graded again (hard links: no copy)."""
    for entry in old.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry.name.isdigit() and int(entry.name) not in regraded:
            shutil.copytree(entry, new / entry.name, copy_function=os.link, symlinks=True)


def _bound_memory() -> None:
    """Each worker's heap is capped: an archive that would take more ends in MemoryError, one line."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = WORKER_MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _result_of(future, item: collected.Collected, deadline: datetime.datetime | None) -> Graded:
    """A grading's result; whatever one archive did to its worker (a JSON nested 100,000 deep,
    memory, a crash) is one line naming that archive, and the others are graded."""
    try:
        graded = future.result()
    except (Exception, concurrent.futures.process.BrokenProcessPool) as error:   # noqa: B902 - one archive's fault
        reason = str(error).splitlines()[0][:120] if str(error) else ""
        graded = Graded(gradebook.printable(item.shown), item.student or "?",
                        f"not graded: {type(error).__name__}" + (f" ({reason})" if reason else ""),
                        arrived=item.arrived)
    graded.late = item.marked_late or bool(deadline and datetime.datetime.fromisoformat(item.arrived) > deadline)
    return graded


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


def grade_one(item: collected.Collected, roster: Roster, course: Course, work: Path, signed: bool = False) -> Graded:
    """One archive, its files unpacked in ``work`` (a folder of its own, named by the grader, not
    by the archive): its verdict and rows. Anything the archive holds ends in a verdict; what
    escapes even that (a RecursionError, memory) is caught by grade_all, per archive."""
    shown = gradebook.printable(item.shown)
    if item.problem:
        return Graded(shown, "?", f"not graded: {item.problem}", arrived=item.arrived)
    try:
        submission = archive.read(item.path)
    except archive.SubmissionError as error:
        return Graded(shown, item.student or "?", f"rejected: {error}", arrived=item.arrived)
    claimed = roster.find(submission.student)
    findings = []
    if item.student is not None:
        student = item.student
        if claimed is None or claimed.id != student:
            findings.append(f"{shown}, collected from {student} ({item.how}), says it is "
                            f"{gradebook.printable(submission.student[:64])}'s: graded as {student}'s")
    elif claimed is None:
        return Graded(shown, "?", f"rejected: {gradebook.printable(submission.student[:64])} is not on the roster",
                      arrived=item.arrived)
    else:
        student = claimed.id
    if submission.course != course.name:
        return Graded(shown, student, f"rejected: made for course {submission.course[:40]!r}, not {course.name}",
                      arrived=item.arrived, how=item.how, findings=findings)
    variant = course.variant(student)
    folder = work / file_part(student)
    folder.mkdir(parents=True)
    for name, data in submission.files.items():
        (folder / name).write_bytes(data)
    whose = identity.roster_lookup(course, roster.ids)
    studied = {name: _study(folder / name, name, variant, whose)
               for name in submission.files if name.endswith(CAPTURE_SUFFIXES)}
    if signed:
        _check_signatures(studied, submission.files, course, student)
    rows, unknown = _check_answers(submission, student, folder, studied)
    if unknown:
        findings.append(f"answers to exercises this course does not have: {', '.join(sorted(unknown)[:5])}"
                        + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    theirs = sum(1 for study in studied.values() if study.identity.yours)
    right = sum(row.correct for row in rows)
    not_theirs = {name: study.identity.reason for name, study in studied.items() if not study.identity.yours}
    verdict = (f"graded: {right} of {len(rows)} answers right; {theirs} of {len(studied)} captures theirs"
               + (f" ({'; '.join(f'{name}: {why}' for name, why in not_theirs.items())})" if not_theirs else ""))
    return Graded(shown, student, gradebook.printable(verdict), rows, item.arrived, True, item.how, findings,
                  not_theirs, {name: "; ".join(s.kernel) for name, s in studied.items() if s.kernel},
                  {name: study.prints for name, study in studied.items()})


@dataclasses.dataclass
class Study:
    """What the grader learns of one capture: whose it is, whether its kernel file agrees, its fingerprints."""

    identity: identity.Identity
    kernel: list[str] = dataclasses.field(default_factory=list)
    prints: list[str] = dataclasses.field(default_factory=list)
    refused: str = ""
    capture: Any = None          # the analysis, shared with the checkers (each capture is read once)
    samples: list | None = None  # its kernel file's samples, read once too


def _study(path: Path, name: str, variant, whose) -> Study:
    from lab.inspect.analysis import analyze
    from lab.inspect.kernel import kernel_file_of, read_kernel_file
    from lab.inspect.tcp import TooLarge

    try:
        capture = direct = analyze(path, keep=True, max_frames=MAX_CAPTURE_FRAMES,
                                   max_connections=MAX_CAPTURE_CONNECTIONS)
        if not capture.connections:              # a capture under an overlay: the lab's TCP is inside VXLAN
            from lab.inspect.overlay import analyze_inner

            capture = analyze_inner(path)
    except TooLarge as error:
        refused = (f"refused: {error}, more than any lesson's capture (at most {MAX_CAPTURE_FRAMES:,} frames and "
                   f"{MAX_CAPTURE_CONNECTIONS:,} connections)")
        return Study(identity.Identity(False, (identity.Evidence("file", False, refused),)), refused=refused)
    except (LabError, OSError) as error:
        return Study(identity.Identity(False, (identity.Evidence("file", False, f"not a readable capture: {error}"),)),
                     refused="not a readable capture")
    samples: list = []
    read: list | None = None     # the samples as read, for the checkers (None: they read the file and say why)
    kernel_path = kernel_file_of(path)
    disagree = []
    if kernel_path is not None:
        from lab.course.kernel_agreement import disagreements

        try:
            samples = read = read_kernel_file(kernel_path)
            disagree = disagreements(capture, samples)
        except (LabError, OSError, ValueError) as error:
            disagree = [f"it cannot be read ({str(error)[:80]})"]
    verdict = identity.judge(capture, name, variant, port_of_connections(capture.connections), whose)
    return Study(verdict, disagree, copies.fingerprints(capture, samples),
                 capture=direct if capture is direct else None,     # the checkers read an overlay's inner TCP anew
                 samples=read)


def _check_signatures(studied: dict[str, Study], files: dict[str, bytes], course: Course, student: str) -> None:
    """A capture without the room's intact signature for ``student`` is not theirs, whatever else it shows:
    in a room nobody but the broker makes captures."""
    from lab.host.room.signatures import problem

    for name, study in studied.items():
        why = problem(course.room_key, name, files, student)
        if why is not None:
            study.identity = identity.Identity(False, (identity.Evidence("room", False, why),))


def _check_answers(submission, student: str, folder: Path, studied: dict[str, Study]) -> tuple[list[Row], set]:
    """The answer that counts for each exercise of the course (the last one recorded), checked again;
    and the names of exercises the course does not have."""
    known = set(course_exercises())
    counted: dict[str, dict] = {}
    unknown = set()
    for entry in submission.answers:
        if entry["exercise"] in known:
            counted[entry["exercise"]] = entry
        else:
            unknown.add(gradebook.printable(entry["exercise"][:60]))
    checkers: dict = {}
    rows = []
    for exercise, entry in sorted(counted.items()):
        answer = json.dumps(entry.get("answer"))[:200]
        correct, feedback = _check(entry, folder, studied, checkers)
        rows.append(Row(student, exercise, gradebook.printable(entry["capture"][:128]), answer, correct, feedback))
    return rows, unknown


def _check(entry: dict, folder: Path, studied: dict[str, Study], checkers: dict) -> tuple[bool, str]:
    capture = entry["capture"]
    if capture not in studied:
        return False, f"its capture {capture[:60]} is not in the submission"
    study = studied[capture]
    if study.refused:
        return False, f"{capture}: {study.refused}"
    checker = _checker(entry, folder / capture, checkers, study.capture, study.samples)
    if isinstance(checker, str):
        return False, checker
    try:
        verdict = checker.verdict(entry["exercise"], entry.get("answer"))
    except KeyError:
        return False, f"no exercise {entry['exercise'][:60]!r}"
    except Exception as error:           # an answer of a form no checker foresaw: graded wrong, said why
        return False, f"could not check this answer ({type(error).__name__})"
    message = verdict.message.split(": ", 1)[-1]
    if not study.identity.yours:
        return False, f"{capture} is not this student's: {study.identity.reason}"
    if study.kernel and entry["checker"] == "Dynamics":
        return False, f"not counted: the kernel file beside {capture} disagrees with it ({study.kernel[0]})"
    return bool(verdict.ok), message


def _checker(entry: dict, path: Path, made: dict, analysed=None, samples: list | None = None):
    """The checker the notebook used, made again on the capture as the grader ``analysed`` it, with
    the kernel ``samples`` it read (an overlay's checker reads the inner TCP itself); or a string
    saying why it cannot be."""
    from lab.teach.dynamics import Dynamics
    from lab.teach.exercises import Exercises
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
            made[key] = (Dynamics(path, bulk=bulk, capture=analysed, samples=samples) if kind == "Dynamics" else OverlayExercises(path)
                         if kind == "OverlayExercises" else Exercises(path, bulk=bulk, stream=stream, capture=analysed))
        except (LabError, OSError, IndexError) as error:          # CaptureMismatch is a LabError
            made[key] = f"its capture cannot be studied: {str(error)[:120]}"
    return made[key]


def read_points(path: Path) -> dict[str, float]:
    """The [points] table of a course file: exercise = points, each an exercise of the lab."""
    from lab.course.variant import _read_toml

    table = _read_toml(path, "a course file").get("points", {})
    if not isinstance(table, dict):
        raise LabError(f"{path}: [points] must be a table of exercise = points")
    known = set(course_exercises())
    bad = [name for name, value in table.items()
           if name not in known or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0]
    if bad:
        raise LabError(f"{path}: [points] has {', '.join(repr(name[:40]) for name in bad[:5])}: each must be an "
                       "exercise of the lab (see the notebooks) with a number of points")
    return {name: float(value) for name, value in table.items()}
