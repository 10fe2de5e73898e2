"""A class: variants, recorded answers, submissions read as hostile data, and grading.

The grading tests here use captures made with scapy (a handshake and a request that
carries a student's token), so they run without Docker; tests/test_course_docker.py
does the same end to end with real scenarios and real captures.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import zipfile
import zlib
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, wrpcap

from lab.course import archive, gradebook, grading
from lab.course.students import Roster, read_roster
from lab.course.variant import Course, create, read_course, read_secret, set_student
from lab.errors import LabError
from lab.inside.protocol import PORT

ROSTER = ["alice", "bob", "carol"]


@pytest.fixture
def course(tmp_path) -> tuple[Path, Path]:
    return create("net101", tmp_path / "course")


def exchange_capture(path: Path, line: str, client_port: int = 40000) -> Path:
    """A capture of one lab exchange: handshake, the request, its reply, the close."""
    client, server = ("10.77.0.3", client_port), ("10.77.0.2", PORT)
    c_isn, s_isn = 1000 + zlib.crc32(line.encode()) % 100_000, 5000     # a run of its own: its own ISNs

    def frame(src, dst, flags, seq, ack, data=b"", t=0.0):
        packet = Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq,
                                                            ack=ack, window=65535) / data
        packet.time = t + c_isn          # and its own clock
        return packet

    request, reply = line.encode() + b"\n", b"OK " + line[5:].encode() + b"\n"
    frames = [frame(client, server, "S", c_isn, 0, t=1.0), frame(server, client, "SA", s_isn, c_isn + 1, t=1.0001),
              frame(client, server, "A", c_isn + 1, s_isn + 1, t=1.0002),
              frame(client, server, "PA", c_isn + 1, s_isn + 1, request, t=1.0003),
              frame(server, client, "PA", s_isn + 1, c_isn + 1 + len(request), reply, t=1.0005),
              frame(client, server, "FA", c_isn + 1 + len(request), s_isn + 1 + len(reply), t=1.0007),
              frame(server, client, "FA", s_isn + 1 + len(reply), c_isn + 2 + len(request), t=1.0008),
              frame(client, server, "A", c_isn + 2 + len(request), s_isn + 2 + len(reply), t=1.0009)]
    wrpcap(str(path), frames)
    return path


def student_submits(tmp_path, monkeypatch, student: str, course_file: Path, capture: Path, answers: dict) -> Path:
    """As a student would: set the id, check answers in a notebook's way, submit."""
    from lab.course.submitting import submit
    from lab.teach.exercises import Exercises

    monkeypatch.setenv("TCPLAB_SUBMISSIONS", str(tmp_path / student))
    set_student(student, course_file)
    ex = Exercises(capture)
    for name, answer in answers.items():
        ex.check(name, ex.reveal(name) if answer == "right" else answer)
    return submit(say=lambda line: None)


def test_a_variant_is_the_same_for_the_same_id_and_course_and_differs_otherwise(course):
    secret, course_file = course
    mine = read_course(course_file)
    assert read_secret(secret) == mine                     # the grader derives the students' key again
    assert mine.variant("alice") == mine.variant("alice")
    assert mine.variant("alice").token != mine.variant("bob").token
    another = Course.from_secret("net101", b"another secret" * 3)
    assert another.variant("alice") != mine.variant("alice")        # another year: other variants
    assert 2_000_000 <= mine.variant("alice").bulk_bytes < 3_000_000


def test_a_course_is_made_once_and_its_secret_is_the_instructors_alone(course, tmp_path):
    secret, course_file = course
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(LabError, match="exists: a course is made once"):
        create("net101", tmp_path / "course")
    assert "secret" not in course_file.read_text().split("key")[0]


@pytest.mark.parametrize("text, problem", [
    ("id\nalice\n../etc\n", "row 3"),
    ("alice\nalice\n", "twice"),
    ("id,name\n", "names no student"),
])
def test_a_bad_roster_is_one_line_naming_its_row(tmp_path, text, problem):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    with pytest.raises(LabError, match=problem):
        read_roster(path)


def test_a_roster_is_a_csv_with_an_id_column_or_one_id_a_line(tmp_path):
    (tmp_path / "a.csv").write_text("name,id\nAlice,alice\nBob,bob\n")
    (tmp_path / "b.txt").write_text("# class of 2026\nalice\n\nbob\n")
    assert read_roster(tmp_path / "a.csv").ids == read_roster(tmp_path / "b.txt").ids == ["alice", "bob"]


def test_answers_are_recorded_only_for_a_student(tmp_path, monkeypatch, course):
    from lab.teach.answers import answers_file
    from lab.teach.exercises import Exercises

    monkeypatch.setenv("TCPLAB_SUBMISSIONS", str(tmp_path / "nobody"))
    capture = exchange_capture(tmp_path / "x.pcapng", "ECHO hi")
    Exercises(capture).check("syn_sequence_number", 1000)
    assert not answers_file().exists()
    set_student("alice", course[1])
    Exercises(capture).check("syn_sequence_number", 1000)
    Exercises(capture).check("syn_sequence_number", ...)             # not answered yet: not recorded
    [entry] = [json.loads(line) for line in answers_file().read_text().splitlines()]
    assert entry["exercise"] == "syn_sequence_number" and entry["answer"] == 1000 and entry["capture"] == "x.pcapng"


def test_three_students_are_graded_and_a_swapped_capture_is_caught(tmp_path, monkeypatch, course):
    secret, course_file = course
    key = read_course(course_file)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    made = {}
    for student in ROSTER:
        made[student] = exchange_capture(tmp_path / f"{student}.pcapng", f"ECHO hi {key.variant(student).tag}")
    answers = {"syn_sequence_number": "right", "first_request_length": "right", "handshake_rtt_ms": 42.0}
    for student, capture in (("alice", made["alice"]), ("bob", made["bob"]), ("carol", made["alice"])):
        archive_path = student_submits(tmp_path, monkeypatch, student, course_file, capture, answers)
        archive_path.rename(inbox / archive_path.name)
    out = tmp_path / "grades"
    results = grading.grade_all(inbox, ROSTER + ["dave"], read_secret(secret), out, workers=2).results
    verdicts = {graded.student: graded.verdict for graded in results}
    assert verdicts["alice"].startswith("graded: 2 of 3 answers right; 1 of 1 captures theirs")
    assert verdicts["bob"].startswith("graded: 2 of 3 answers right")
    assert "carry the token" in verdicts["carol"] and "(alice)" in verdicts["carol"]   # copied, and from whom
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert {row["student"] for row in rows} == {"alice", "bob", "carol"} and len(rows) == 9
    assert all(row["correct"] == "0" for row in rows if row["student"] == "carol")
    table = {row["student"]: row for row in csv.DictReader(open(out / "students.csv"))}
    assert table["alice"]["right"] == "2" and table["dave"]["submitted"] == "0"
    report = (out / "report.txt").read_text()
    assert "handshake_rtt_ms: 3 of 3 missed (100%); wrong answers given: 42.0 (3)" in report
    assert "no submission from: dave" in report


def rewritten(made: Path, folder: Path, change) -> Path:
    """A copy of the archive ``made`` in ``folder`` whose answers ``change`` rewrote, the manifest
    made to match (what a student editing their archive would do)."""
    folder.mkdir(exist_ok=True)
    copy = folder / made.name
    with zipfile.ZipFile(made) as original, zipfile.ZipFile(copy, "w") as out:
        manifest = json.loads(original.read(archive.MANIFEST))
        lines = [change(json.loads(line)) for line in original.read(archive.ANSWERS).splitlines()]
        text = "".join(json.dumps(entry) + "\n" for entry in lines).encode()
        manifest["files"][archive.ANSWERS] = archive._describe(text)
        out.writestr(archive.MANIFEST, json.dumps(manifest))
        out.writestr(archive.ANSWERS, text)
        for name in original.namelist():
            if name not in (archive.MANIFEST, archive.ANSWERS):
                out.writestr(name, original.read(name))
    return copy


def test_the_grader_rechecks_instead_of_trusting_the_recorded_verdict(tmp_path, monkeypatch, course):
    secret, course_file = course
    capture = exchange_capture(tmp_path / "a.pcapng", f"ECHO hi {read_course(course_file).variant('alice').tag}")
    made = student_submits(tmp_path, monkeypatch, "alice", course_file, capture, {"syn_sequence_number": 7})
    forged = rewritten(made, tmp_path / "inbox", lambda entry: {**entry, "correct": True})   # "it was right"
    [graded] = grading.grade_all(forged.parent, ROSTER, read_secret(secret), tmp_path / "out", workers=1).results
    assert graded.verdict.startswith("graded: 0 of 1 answers right")


@pytest.mark.parametrize("answer", [{"x": 1}, "A" * 100_000, [[1, [2]]], None, True, float("1e308")])
def test_an_answer_of_any_type_is_graded_wrong_with_a_reason_never_a_crash(tmp_path, monkeypatch, course, answer):
    secret, course_file = course
    capture = exchange_capture(tmp_path / "a.pcapng", f"ECHO hi {read_course(course_file).variant('alice').tag}")
    made = student_submits(tmp_path, monkeypatch, "alice", course_file, capture,
                           {"syn_sequence_number": 7, "request_lengths": [1]})
    odd = rewritten(made, tmp_path / "inbox", lambda entry: {**entry, "answer": answer})
    [graded] = grading.grade_all(odd.parent, ROSTER, read_secret(secret), tmp_path / "out", workers=1).results
    assert graded.verdict.startswith("graded: 0 of 2 answers right")
    rows = list(csv.DictReader(open(tmp_path / "out" / "grades.csv")))
    assert len(rows) == 2 and all(row["feedback"] and len(row["answer"]) <= 200 for row in rows)


def zip_with(path: Path, members: dict[str, bytes], manifest: dict | None = None, links: tuple[str, ...] = ()) -> Path:
    """An archive of these members, with a manifest that describes them unless one is given."""
    listing = {name: archive._describe(data) for name, data in members.items()}
    manifest = manifest or {"format": archive.FORMAT, "student": "alice", "course": "net101", "lab_version": "0.1.0",
                            "files": listing}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr(archive.MANIFEST, json.dumps(manifest))
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def hostile_archives(folder: Path) -> dict[str, str]:
    """Each hostile archive, and what its one-line verdict must say."""
    capture = exchange_capture(folder / "plain.pcapng", "ECHO hi").read_bytes()
    answers = b'{"exercise": "syn_sequence_number", "answer": 1, "capture": "a.pcapng", "checker": "Exercises"}\n'
    cases = {}

    def case(name, expected, **kwargs):
        zip_with(folder / f"{name}.zip", **kwargs)
        cases[f"{name}.zip"] = expected

    case("traversal", "only plain names", members={"../../escaped.pcapng": capture})
    case("absolute", "only plain names", members={"/tmp/escaped.pcapng": capture})
    case("link", "not a regular file", members={"a.pcapng": b"/etc/passwd"}, links=("a.pcapng",))
    case("bomb", "unpacks to more than", members={"a.pcapng": b"\0" * (archive.MAX_MEMBER_BYTES + 1)})
    case("unlisted", "not in its manifest", members={archive.ANSWERS: answers},
         manifest={"format": archive.FORMAT, "student": "alice", "course": "net101", "lab_version": "1", "files": {}})
    case("no-manifest-form", "not a tcplab-submission/1 manifest", members={}, manifest={"format": "mine"})
    case("wrong-types", "lacks exercise, capture or checker",
         members={archive.ANSWERS: b'{"exercise": 5, "capture": [], "checker": null}\n', "a.pcapng": capture})
    case("not-json", "is not JSON", members={archive.ANSWERS: b"{answers\n", "a.pcapng": capture})
    (folder / "truncated.zip").write_bytes((folder / "traversal.zip").read_bytes()[:200])
    cases["truncated.zip"] = "not a readable zip"
    (folder / "text.zip").write_text("not a zip at all")
    cases["text.zip"] = "not a readable zip"
    (folder / "huge.zip").write_bytes(b"\0")
    os.truncate(folder / "huge.zip", archive.MAX_ARCHIVE_BYTES + 1)
    cases["huge.zip"] = "more than a submission may be"
    (folder / "elsewhere.zip").symlink_to(folder / "text.zip")
    cases["elsewhere.zip"] = "not a regular file"
    return cases


def test_hostile_archives_each_get_a_one_line_verdict_and_nothing_is_written_outside_the_output(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cases = hostile_archives(inbox)
    before = sorted(p for p in tmp_path.rglob("*"))
    key = Course.from_secret("net101", b"s" * 32)
    results = grading.grade_all(inbox, ROSTER, key, tmp_path / "out", workers=2).results
    verdicts = {graded.archive: graded.verdict for graded in results}
    assert set(verdicts) == set(cases)
    for name, expected in cases.items():
        assert expected in verdicts[name] and "\n" not in verdicts[name], (name, verdicts[name])
    after = sorted(p for p in tmp_path.rglob("*") if not str(p).startswith(str(tmp_path / "out")))
    assert after == before                                       # nothing written but in out/
    assert not (tmp_path / "escaped.pcapng").exists()


def test_a_corrupt_capture_in_a_good_archive_makes_its_answers_wrong_not_the_grader_fail(tmp_path, monkeypatch, course):
    secret, course_file = course
    capture = exchange_capture(tmp_path / "a.pcapng", f"ECHO hi {read_course(course_file).variant('alice').tag}")
    made = student_submits(tmp_path, monkeypatch, "alice", course_file, capture, {"syn_sequence_number": "right"})
    broken = tmp_path / "inbox" / made.name
    broken.parent.mkdir()
    with zipfile.ZipFile(made) as original, zipfile.ZipFile(broken, "w") as out:
        manifest = json.loads(original.read(archive.MANIFEST))
        garbage = b"\x0a\x0d\x0d\x0a" + b"\xff" * 64
        manifest["files"]["a.pcapng"] = archive._describe(garbage)
        out.writestr(archive.MANIFEST, json.dumps(manifest))
        out.writestr(archive.ANSWERS, original.read(archive.ANSWERS))
        out.writestr("a.pcapng", garbage)
    [graded] = grading.grade_all(broken.parent, ROSTER, read_secret(secret), tmp_path / "out", workers=1).results
    assert graded.verdict.startswith("graded: 0 of 1 answers right; 0 of 1 captures theirs")
    assert "not a readable capture" in graded.verdict


def test_a_formula_in_an_answer_stays_text_in_the_spreadsheet():
    assert gradebook.spreadsheet_safe("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert gradebook.spreadsheet_safe("client") == "client"
    with io.StringIO() as out:
        csv.writer(out).writerow([gradebook.spreadsheet_safe("@SUM(A1)")])
        assert out.getvalue().startswith("'@")


def test_one_archive_that_breaks_its_worker_is_one_line_and_the_others_are_graded(tmp_path):
    """A JSON nested 100,000 deep raised RecursionError and stopped the run; an archive named
    ...zip unpacked into work/.. and raised FileExistsError. Each is one line now."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    capture = exchange_capture(tmp_path / "plain.pcapng", "ECHO hi").read_bytes()
    deep = b"[" * 100_000 + b"]" * 100_000
    zip_with(inbox / "deep-answers.zip", members={archive.ANSWERS: deep + b"\n", "a.pcapng": capture})
    with zipfile.ZipFile(inbox / "deep-manifest.zip", "w") as out:
        out.writestr(archive.MANIFEST, b'{"format": ' + deep + b"}")
    zip_with(inbox / "...zip", members={"a.pcapng": capture})
    zip_with(inbox / "good.zip", members={"a.pcapng": capture})
    key = Course.from_secret("net101", b"s" * 32)
    results = {graded.archive: graded.verdict
               for graded in grading.grade_all(inbox, ROSTER, key, tmp_path / "out", workers=2).results}
    assert set(results) == {"deep-answers.zip", "deep-manifest.zip", "...zip", "good.zip"}
    assert "nests too deep" in results["deep-answers.zip"] and "nests too deep" in results["deep-manifest.zip"]
    assert results["...zip"].startswith("graded:") and results["good.zip"].startswith("graded:")
    assert all("\n" not in verdict for verdict in results.values())


def test_a_failed_run_leaves_the_last_results_whole(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    zip_with(inbox / "good.zip", members={"a.pcapng": exchange_capture(tmp_path / "p.pcapng", "ECHO hi").read_bytes()})
    key = Course.from_secret("net101", b"s" * 32)
    out = tmp_path / "out"
    grading.grade_all(inbox, ROSTER, key, out, workers=1)
    before = (out / "students.csv").read_text()
    monkeypatch.setattr(grading.gradebook, "write_all", lambda *args: 1 / 0)       # the run dies while writing
    with pytest.raises(ZeroDivisionError):
        grading.grade_all(inbox, ROSTER, key, out, workers=1)
    assert (out / "students.csv").read_text() == before                     # the last run's, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []     # nothing half-made left


def test_names_from_archives_become_neither_formulas_nor_terminal_escapes(tmp_path):
    """students.csv's header carried an exercise named =cmd|' /C calc'!A0; ESC]0;pwned BEL ESC[2J
    reached report.txt and the console."""
    rows = [grading.Row("alice", "=cmd|' /C calc'!A0", "a.pcapng", "\x1b]0;pwned\x07\x1b[2J", False, "+SUM(1,2)")]
    results = [grading.Graded("\x1b[2Jalice.zip", "alice", "graded", rows, accepted=True)]
    made = grading.Grading(results, Roster.of(["alice"]), Course.from_secret("net101", b"s" * 32),
                           {"=cmd|' /C calc'!A0": 1.0})
    grading.gradebook.write_all(made, tmp_path)
    header = next(csv.reader(open(tmp_path / "students.csv")))
    assert header[8] == "'=cmd|' /C calc'!A0"
    everything = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert "\x1b" not in everything and "\x07" not in everything and "\\x1b]0;pwned\\x07" in everything
    assert gradebook.printable("tab\tand\nnewline stay") == "tab\tand\nnewline stay"


def test_an_output_folder_the_grader_did_not_make_is_never_replaced(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    zip_with(inbox / "good.zip", members={"a.pcapng": exchange_capture(tmp_path / "p.pcapng", "ECHO hi").read_bytes()})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("months of work")
    key = Course.from_secret("net101", b"s" * 32)
    with pytest.raises(LabError, match="holds files a grading did not write"):
        grading.grade_all(inbox, ROSTER, key, mine, workers=1)
    assert (mine / "thesis.tex").read_text() == "months of work" and sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    grading.grade_all(inbox, ROSTER, key, tmp_path / "new", workers=1)        # new: made, then made again
    grading.grade_all(inbox, ROSTER, key, tmp_path / "new", workers=1)
    assert (tmp_path / "new" / grading.OUTPUT_MARK).is_file()
