"""Grading a class: 200 submissions graded right, next to lab.inspect alone reading the same captures;
and grading's memory on a hostile capture, next to lab.inspect's.

Each student hands in captures of their own (bench/own_captures.py makes them from
the bundled exchange, the 3 MB download with loss and the slow-start scenario with
its kernel samples: their token or BULK size in the request, their own ISNs and
clock) and the right answer to 12 questions about them. So every answer is counted
right, and the path that counts is the one timed: each archive read as hostile data,
every capture analysed, whose it is, its kernel file against it, copies across the
class, every answer checked again, the CSVs, exports and report written, a process
per core. The reference is lab.inspect's analyze() on the same captures, one after
the other, as `python -m lab.inspect` reads them.

The memory table grades one archive holding a capture of 300,000 SYN-only connections
(21 MB, as the issue found it: 1.8 GB in lab.inspect --json, 776 MB in the grader,
MemoryError under 1 GB), and shows the largest resident size of a grading worker next
to lab.inspect's analyze() of the same capture, each in a process of its own.

    python bench/grade.py [--students 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import table  # noqa: E402
from own_captures import rewrite, rewrite_kernel_file  # noqa: E402

DATA = ROOT / "notebooks" / "data"
QUESTIONS = {
    "exchange": ("Exercises", {"bulk": False, "stream": None},
                 ["syn_sequence_number", "handshake_rtt_ms", "first_request_length", "first_fin_side"]),
    "bulk-loss": ("Exercises", {"bulk": True, "stream": None},
                  ["first_segment_lengths", "sample_rtts_ms", "estimated_rtt_ms", "throughput_mbit", "retransmitted"]),
    "slow-start": ("Dynamics", {"bulk": True}, ["initial_cwnd", "cwnd_at_first_loss", "ssthresh_after_loss"]),
}
REQUESTS = {"exchange": b"UPPER a byte stream\n", "bulk-loss": b"BULK 3000000\n", "slow-start": b"BULK 2000000\n"}


def own_captures(folder: Path, variant) -> dict[str, Path]:
    """The student's captures (and kernel file), each a run of their own."""
    folder.mkdir(parents=True)
    marks = {"exchange": f"U {variant.tag}\n".encode(), "bulk-loss": f"BULK {variant.bulk_bytes}\n".encode(),
             "slow-start": f"BULK {variant.bulk_bytes}\n".encode()}
    files = {}
    for name in QUESTIONS:
        clock = rewrite(DATA / f"{name}.pcapng", folder / f"{name}.pcap", {REQUESTS[name]: marks[name]},
                        variant.student)
        files[f"{name}.pcap"] = folder / f"{name}.pcap"
        if name == "slow-start":
            rewrite_kernel_file(DATA / f"{name}.kernel.jsonl", folder / f"{name}.kernel.jsonl", clock)
            files[f"{name}.kernel.jsonl"] = folder / f"{name}.kernel.jsonl"
    return files


def right_answers(files: dict[str, Path]) -> list[dict]:
    """The right answer to each question, as a notebook would record it."""
    from lab.teach.answers import file_digest, plain
    from lab.teach.dynamics import Dynamics
    from lab.teach.exercises import Exercises

    entries = []
    for name, (checker, options, questions) in QUESTIONS.items():
        path = files[f"{name}.pcap"]
        made = Dynamics(path, bulk=True) if checker == "Dynamics" else Exercises(path, bulk=options["bulk"])
        for question in questions:
            entries.append({"exercise": question, "answer": plain(made.reveal(question)), "capture": path.name,
                            "sha256": file_digest(path), "checker": checker, "options": options, "correct": True})
    return entries


def make_class(inbox: Path, own: Path, students: list[str], course) -> list[Path]:
    from lab.course import archive

    captures = []
    for number, student in enumerate(students, 1):
        files = own_captures(own / student, course.variant(student))
        archive.write(inbox / f"{course.name}-{student}.zip", student, course.name, "0.1.0", right_answers(files),
                      files)
        captures += [path for name, path in files.items() if name.endswith(".pcap")]
        if number % 20 == 0:
            print(f"  made {number} of {len(students)} students' captures", file=sys.stderr)
    return captures


def peak_mb(code: str) -> float:
    """The largest resident size (MB) of a Python process running ``code``, or of any process it waited for."""
    wrapped = (f"import resource, sys\nsys.path.insert(0, {str(ROOT)!r})\n{code}\n"
               "print(max(resource.getrusage(who).ru_maxrss for who in "
               "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))")
    done = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(done.stdout.split()[-1]) / 1024


def memory_rows(folder: Path) -> list[list[str]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_grading_trust import syn_flood_capture

    from lab.course import archive

    flood = syn_flood_capture(folder / "flood.pcap", 300_000)
    inbox = folder / "hostile"
    inbox.mkdir()
    answers = [{"exercise": "syn_sequence_number", "answer": 1, "capture": "flood.pcap", "checker": "Exercises"}]
    archive.write(inbox / "flood.zip", "s000", "bench", "0.1.0", answers, {"flood.pcap": flood})
    grading = peak_mb(
        "from pathlib import Path\nfrom lab.course.grading import grade_all\nfrom lab.course.variant import Course\n"
        f"r = grade_all(Path({str(inbox)!r}), ['s000'], Course.from_secret('bench', b'b' * 32), "
        f"Path({str(folder / 'hostile-out')!r}), workers=1)\n"
        "print(r.results[0].verdict[:100], file=sys.stderr)")
    inspect = peak_mb(f"from lab.inspect.analysis import analyze\nanalyze({str(flood)!r})")
    baseline = peak_mb("import lab.course.grading, lab.inspect.analysis, lab.teach.dynamics")
    size = flood.stat().st_size / 1e6
    return [[f"grading an archive with it ({size:.0f} MB, 300,000 connections), worker peak", f"{grading:.0f}",
             f"{grading / inspect:.2f}"],
            ["reference: lab.inspect analyze() of the same capture", f"{inspect:.0f}", "1.00"],
            ["(a Python process with the lab's modules loaded, nothing read)", f"{baseline:.0f}", ""]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    args = parser.parse_args()
    from lab.course.grading import grade_all
    from lab.course.variant import Course
    from lab.inspect.analysis import analyze

    course = Course.from_secret("bench", b"b" * 32)
    students = [f"s{number:03d}" for number in range(args.students)]
    questions = sum(len(entry[2]) for entry in QUESTIONS.values())
    with tempfile.TemporaryDirectory(prefix="tcplab-grade-") as tmp:
        inbox, out = Path(tmp) / "inbox", Path(tmp) / "out"
        inbox.mkdir()
        captures = make_class(inbox, Path(tmp) / "own", students, course)
        size = sum(path.stat().st_size for path in inbox.iterdir())
        started = time.perf_counter()
        result = grade_all(inbox, students, course, out)
        graded_s = time.perf_counter() - started
        rights = sum(result.right(student) for student in students)
        started = time.perf_counter()
        for path in captures:
            analyze(path)
        inspect_s = time.perf_counter() - started
        memory = memory_rows(Path(tmp))
    table(f"grading {len(students)} submissions ({size / 1e6:.0f} MB of archives, {len(captures)} captures, "
          f"{len(students) * questions} answers checked; {os.cpu_count()} cores)",
          ["", "seconds", "per submission ms", "ratio"],
          [["invoke grade (all of it, a process per core)", f"{graded_s:.1f}", f"{graded_s / len(students) * 1e3:.0f}",
            f"{graded_s / inspect_s:.2f}"],
           ["reference: lab.inspect analyze() alone, one process", f"{inspect_s:.1f}",
            f"{inspect_s / len(students) * 1e3:.0f}", "1.00"]])
    print(f"{rights} of {len(students) * questions} right answers graded right"
          + ("" if rights == len(students) * questions else ": the bench's captures are not taken for the students' own"))
    table("memory on a hostile capture (largest resident size, MB)", ["", "MB", "ratio"], memory)


if __name__ == "__main__":
    main()
