"""Grading a class: 200 submissions graded, next to lab.inspect alone reading the same captures.

Each submission holds the captures the notebooks study, at their sizes (the bundled
exchange, the 3 MB download with loss, and the zero-window scenario with its kernel
samples, made by the lab itself), and 11 answers about them. The grader does all it
does for a class: reads each archive as hostile data, analyses every capture (once
for whose it is, once for the checkers), checks every answer again, writes the CSVs
and the report, with a process per core. The reference is lab.inspect's analyze()
on the same 600 captures, one after the other, as `python -m lab.inspect` reads them:
the floor any grading that re-analyses must stand on.

    python bench/grade.py [--students 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "notebooks" / "data"
CAPTURES = {"exchange.pcapng": ("Exercises", {"bulk": False, "stream": None},
                                ["syn_sequence_number", "handshake_rtt_ms", "first_request_length", "first_fin_side"]),
            "bulk-loss.pcapng": ("Exercises", {"bulk": True, "stream": None},
                                 ["first_segment_lengths", "sample_rtts_ms", "estimated_rtt_ms", "throughput_mbit",
                                  "retransmitted"]),
            "zero-window.pcapng": ("Dynamics", {"bulk": True}, ["zero_window_s", "window_probes"])}


def answers() -> list[dict]:
    """The right answer to each question, as a notebook would record it."""
    from lab.teach.answers import file_digest, plain
    from lab.teach.dynamics import Dynamics
    from lab.teach.exercises import Exercises

    entries = []
    for name, (checker, options, questions) in CAPTURES.items():
        made = Dynamics(DATA / name, bulk=True) if checker == "Dynamics" else Exercises(DATA / name, bulk=options["bulk"])
        for question in questions:
            entries.append({"exercise": question, "answer": plain(made.reveal(question)), "capture": name,
                            "sha256": file_digest(DATA / name), "checker": checker, "options": options,
                            "correct": True})
    return entries


def make_submissions(folder: Path, students: list[str], course) -> None:
    from lab.course import archive

    files = {name: DATA / name for name in CAPTURES}
    files["zero-window.kernel.jsonl"] = DATA / "zero-window.kernel.jsonl"
    recorded = answers()
    first = folder / f"{course.name}-{students[0]}.zip"
    archive.write(first, students[0], course.name, "0.1.0", recorded, files)
    for student in students[1:]:             # the same captures under each id: the work is the same
        archive.write(folder / f"{course.name}-{student}.zip", student, course.name, "0.1.0", recorded, files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    args = parser.parse_args()
    from lab.course.grading import grade_all
    from lab.course.variant import Course
    from lab.inspect.analysis import analyze

    course = Course.from_secret("bench", b"b" * 32)
    students = [f"s{number:03d}" for number in range(args.students)]
    with tempfile.TemporaryDirectory(prefix="tcplab-grade-") as tmp:
        inbox, out = Path(tmp) / "inbox", Path(tmp) / "out"
        inbox.mkdir()
        make_submissions(inbox, students, course)
        size = sum(path.stat().st_size for path in inbox.iterdir())
        started = time.perf_counter()
        results = grade_all(inbox, students, course, out)
        graded_s = time.perf_counter() - started
        assert sum(graded.accepted for graded in results) == len(students), results[0].verdict
        rights = sum(row.correct for graded in results for row in graded.rows)
        started = time.perf_counter()
        for _ in students:
            for name in CAPTURES:
                analyze(DATA / name)
        inspect_s = time.perf_counter() - started
        shutil.rmtree(out / "work", ignore_errors=True)
    captures = len(students) * len(CAPTURES)
    table(f"grading {len(students)} submissions ({size / 1e6:.0f} MB of archives, {captures} captures, "
          f"{sum(len(graded.rows) for graded in results)} answers checked; {os.cpu_count()} cores)",
          ["", "seconds", "per submission ms", "ratio"],
          [["invoke grade (all of it, a process per core)", f"{graded_s:.1f}", f"{graded_s / len(students) * 1e3:.0f}",
            f"{graded_s / inspect_s:.2f}"],
           ["reference: lab.inspect analyze() alone, one process", f"{inspect_s:.1f}",
            f"{inspect_s / len(students) * 1e3:.0f}", "1.00"]])
    print("every right answer was graded right" if rights == len(students) * 11 else
          f"only {rights} of {len(students) * 11} answers graded right: the captures are not the students' own "
          "(the bench gives every student the bundled ones), so each answer counts as wrong; the work is the same")


if __name__ == "__main__":
    main()
