"""Grading an instructor can trust: whose each archive is, copies, forged kernel files, a
loaded machine, rosters as LMSs give them, the files an LMS imports, and a class of 20
with three kinds of cheating mixed in.

Captures here are made with scapy (tests/test_course.py's exchange_capture: a run of
its own, with its own ISNs and clock) or are the lab's bundled ones; the same grading
on real scenarios runs in tests/test_course_docker.py.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import re
import struct
import zipfile
from pathlib import Path

import pytest

from lab.course import collected, gradebook, grading
from lab.course.kernel_agreement import disagreements
from lab.course.students import Roster, canonical, check_id, file_part, lab_name, parse_roster, read_roster
from lab.course.variant import Course, Variant, read_course, read_secret
from lab.errors import LabError
from lab.inspect.analysis import analyze
from lab.inspect.kernel import read_kernel_file
from lab.paths import PROJECT_ROOT
from tests.test_course import exchange_capture, student_submits, zip_with

DATA = PROJECT_ROOT / "notebooks" / "data"
RIGHT = {"syn_sequence_number": "right", "first_request_length": "right", "handshake_rtt_ms": "right"}


@pytest.fixture
def course(tmp_path) -> tuple[Path, Path]:
    from lab.course.variant import create

    return create("net101", tmp_path / "course")


# --- ids and rosters -------------------------------------------------------------------

def test_ids_in_any_script_emails_and_long_ids_are_students_and_case_does_not_matter():
    for student in ("zoë", "alice@uni.edu", "a" * 64, "o'brien", "Émile"):
        assert check_id(student) == student
    key = Course.from_secret("net101", b"s" * 32)
    assert key.variant("Alice") .token == key.variant("alice").token                 # one student
    assert key.variant("zoe\u0308").seed == key.variant("zoë").seed                   # composed or not
    assert key.variant("zoë").token != key.variant("zoe").token
    for bad in ("", "../etc", "a b", "x" * 129, "\x1b[2J", "-dash"):
        with pytest.raises(LabError, match="is not usable"):
            check_id(bad)


def test_file_and_lab_names_from_ids_are_short_ascii_unique_and_usable():
    from lab.host.classroom import lab_names
    from lab.host.settings import from_config

    ids = ["alice", "zoë", "zoe", "alice@uni.edu", "alice.uni.edu", "a" * 64, "a" * 63 + "b", "o'brien"]
    names = lab_names("class", by_student={student: lab_name("class", student) for student in ids})
    assert names["alice"] == "class-alice" and file_part("alice") == "alice"
    assert len(set(names.values())) == len(ids)                       # zoë and zoe, the two long ones: apart
    for name in names.values():
        assert len(name) <= 31 and name.isascii()
        from_config({}, name)                                         # a lab may be called so
    assert lab_name("class", "Alice") == lab_name("class", "alice")


def test_a_roster_with_bad_rows_names_every_one_at_once(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("id,name\nalice,Alice\n../etc,X\nbob,Bob\nBOB,Bob again\n,Nobody\nbob,Bob thrice\nx y,Z\n")
    with pytest.raises(LabError) as caught:
        read_roster(path)
    said = str(caught.value)
    assert "\n" not in said and "5 bad rows" in said
    for row in ("row 3", "row 5", "row 6", "row 7", "row 8"):
        assert row in said


def test_canvas_and_moodle_exports_are_rosters_with_names_emails_and_canvas_numbers():
    canvas = parse_roster('Student,ID,SIS User ID,SIS Login ID,Section\n'
                          '    Points Possible,,,,\n'
                          '"Doe, John",12345,s1,jdoe@uni.edu,A\n'
                          '"O\'Brien, Zoë ""Z""",12346,s2,zoë,A\n')
    assert canvas.ids == ["jdoe@uni.edu", "zoë"]
    assert canvas.find("JDOE@UNI.EDU").lms_id == "12345" and canvas.by_lms_id("12346").name == 'O\'Brien, Zoë "Z"'
    assert canvas.by_name("Zoë \"Z\" O'Brien")[0].id == "zoë"
    moodle = parse_roster("First name,Last name,ID number,Email address\nAlice,Smith,,alice@uni.edu\n")
    assert moodle.ids == ["alice@uni.edu"] and moodle.students[0].name == "Alice Smith"
    assert moodle.students[0].email == "alice@uni.edu"


# --- whose it is, and when it came ------------------------------------------------------

def submitted(tmp_path, monkeypatch, course_file, student, answers=RIGHT, line="ECHO hi") -> Path:
    """An honest student's archive: a capture of their own run, answers checked in a notebook's way."""
    key = read_course(course_file)
    capture = exchange_capture(tmp_path / f"{file_part(student)}.pcapng", f"{line} {key.variant(student).tag}",
                               client_port=40000 + len(student))
    return student_submits(tmp_path, monkeypatch, student, course_file, capture, answers)


def test_an_archive_claiming_to_be_a_classmates_is_a_finding_not_her_grade(tmp_path, monkeypatch, course):
    """alice's 3 right answers were replaced by 0 by an archive that said it was hers, made in 9999."""
    secret, course_file = course
    inbox = tmp_path / "inbox"
    for student in ("alice", "bob"):
        (inbox / student).mkdir(parents=True)
        made = submitted(tmp_path, monkeypatch, course_file, student)
        made.rename(inbox / student / made.name)
    forged = zip_with(tmp_path / "forged.zip", members={}, manifest={
        "format": "tcplab-submission/1", "student": "alice", "course": "net101", "lab_version": "1",
        "made": "9999-12-31T23:59:59+00:00", "files": {}})
    forged.rename(inbox / "bob" / "forged.zip")                   # handed in by bob, says it is alice's
    result = grading.grade_all(inbox, ["alice", "bob"], read_secret(secret), tmp_path / "out", workers=2)
    assert result.right("alice") == 3 and result.latest["alice"].archive.startswith("alice/")
    report = report_of(tmp_path / "out")
    assert "bob/forged.zip, collected from bob (folder bob/), says it is alice's" in report
    table = {row["student"]: row for row in csv.DictReader(open(tmp_path / "out" / "students.csv"))}
    assert table["alice"]["right"] == "3"


def test_the_archive_that_arrived_last_counts_whatever_it_says_of_when_it_was_made(tmp_path, monkeypatch, course):
    secret, course_file = course
    inbox = tmp_path / "inbox" / "alice"
    inbox.mkdir(parents=True)
    first = submitted(tmp_path, monkeypatch, course_file, "alice", answers={"syn_sequence_number": 7})
    first = first.rename(inbox / "first.zip")
    with zipfile.ZipFile(first) as old, zipfile.ZipFile(inbox / "first9999.zip", "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "manifest.json":
                data = json.dumps({**json.loads(data), "made": "9999-01-01T00:00:00+00:00"}).encode()
            new.writestr(name, data)
    first.unlink()
    second = submitted(tmp_path, monkeypatch, course_file, "alice").rename(inbox / "second.zip")
    os.utime(inbox / "first9999.zip", (1_700_000_000, 1_700_000_000))
    os.utime(second, (1_800_000_000, 1_800_000_000))
    deadline = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    result = grading.grade_all(inbox.parent, ["alice"], read_secret(secret), tmp_path / "out", workers=1,
                               deadline=deadline)
    assert result.latest["alice"].archive == "alice/second.zip" and result.right("alice") == 3
    assert result.latest["alice"].late                                       # 2027 is after the deadline
    report = report_of(tmp_path / "out")
    assert "alice/first9999.zip (arrived 2023-11-14T22:13:20+00:00) was replaced by alice/second.zip" in report
    assert "late: alice/second.zip arrived 2027-01-15" in report and "its points are not changed" in report
    assert next(csv.DictReader(open(tmp_path / "out" / "students.csv")))["late"] == "1"


def test_lms_downloads_say_whose_each_archive_is(tmp_path, monkeypatch, course):
    secret, course_file = course
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    roster = parse_roster('Student,ID,SIS User ID,SIS Login ID,Section\n"Doe, John",12345,,jdoe,A\n'
                          '"Smith, Ann",12346,,asmith,A\nCarl Lee,12347,,clee,A\n')
    canvas = submitted(tmp_path, monkeypatch, course_file, "jdoe")
    canvas.rename(inbox / f"doejohn_late_12345_999_{canvas.name}")
    moodle = inbox / "Ann Smith_77_assignsubmission_file_"
    moodle.mkdir()
    made = submitted(tmp_path, monkeypatch, course_file, "asmith")
    made.rename(moodle / made.name)
    stranger = submitted(tmp_path, monkeypatch, course_file, "clee")
    stranger.rename(inbox / f"leecarl_55555_1_{stranger.name}")           # a Canvas number not on the roster
    result = grading.grade_all(inbox, roster, read_secret(secret), tmp_path / "out", workers=2)
    assert result.right("jdoe") == 3 and result.latest["jdoe"].how == "Canvas download (user 12345)"
    assert result.latest["jdoe"].late                                          # Canvas said so
    assert result.right("asmith") == 3 and "Moodle folder" in result.latest["asmith"].how
    assert "clee" not in result.latest
    assert "Canvas download of user 55555, who is not on the roster" in report_of(tmp_path / "out")


def test_a_map_says_whose_each_archive_is(tmp_path, monkeypatch, course):
    secret, course_file = course
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    submitted(tmp_path, monkeypatch, course_file, "alice").rename(inbox / "a.zip")
    submitted(tmp_path, monkeypatch, course_file, "bob").rename(inbox / "b.zip")
    (tmp_path / "map.csv").write_text("archive,student\na.zip,Alice\nb.zip,alice\n")
    result = grading.grade_all(inbox, ["alice", "bob"], read_secret(secret), tmp_path / "out", workers=1,
                               mapping=collected.read_map(tmp_path / "map.csv"))
    assert result.latest["alice"].student == "alice" and "bob" not in result.latest
    assert any("b.zip, collected from alice (--map), says it is bob's" in said for said in result.suspicions())


# --- copies ------------------------------------------------------------------------------

def test_a_copy_with_its_token_patched_is_found_and_counts_for_neither(tmp_path, monkeypatch, course):
    """dave copied bob's capture and patched the token (same length): 23 of 25 passed."""
    secret, course_file = course
    key = read_course(course_file)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bob = exchange_capture(tmp_path / "bob.pcapng", f"ECHO hi {key.variant('bob').tag}", client_port=41000)
    patched = tmp_path / "dave.pcapng"
    patched.write_bytes(bob.read_bytes().replace(key.variant("bob").token.encode(), key.variant("dave").token.encode()))
    for student, capture in (("bob", bob), ("dave", patched), ("erin", None)):
        if capture is None:
            made = submitted(tmp_path, monkeypatch, course_file, student)        # honest, the same lines
        else:
            made = student_submits(tmp_path, monkeypatch, student, course_file, capture, RIGHT)
        made.rename(inbox / made.name)
    result = grading.grade_all(inbox, ["bob", "dave", "erin"], read_secret(secret), tmp_path / "out", workers=2)
    assert result.latest["dave"].verdict.startswith("graded: 3 of 3 answers right; 1 of 1 captures theirs")
    assert result.right("dave") == 0 and result.right("bob") == 0 and result.right("erin") == 3
    [copy] = [said for said in result.suspicions() if said.startswith("copy:")]
    assert "bob and dave" in copy and "1 connection with the same sequence numbers" in copy
    assert "1 capture starting at the same nanosecond" in copy
    feedback = re.sub(r"\n {4,}", " ", (tmp_path / "out" / "feedback" / "dave.txt").read_text())
    assert "same run of the lab as a capture bob handed in" in feedback


def test_what_honest_students_share_is_not_taken_for_a_copy():
    """Payload digests match across a class (the same notebook lines, the server's same bytes):
    the fingerprints are ISNs and nanosecond times, which two runs never share."""
    from lab.course.copies import bundled, fingerprints

    exchange, bulk = analyze(DATA / "exchange.pcapng", keep=True), analyze(DATA / "bulk-loss.pcapng", keep=True)
    assert not set(fingerprints(exchange)) & set(fingerprints(bulk))
    assert set(fingerprints(exchange)) <= bundled()                       # every student has these


# --- kernel files --------------------------------------------------------------------------

KERNEL_CAPTURES = sorted(path.name.removesuffix(".kernel.jsonl") for path in DATA.glob("*.kernel.jsonl"))


@pytest.mark.parametrize("name", KERNEL_CAPTURES)
def test_every_bundled_kernel_file_agrees_with_its_capture(name):
    assert disagreements(analyze(DATA / f"{name}.pcapng", keep=True),
                         read_kernel_file(DATA / f"{name}.kernel.jsonl")) == []


def forged(tmp_path: Path, name: str, change) -> list[str]:
    lines = [json.loads(line) for line in (DATA / f"{name}.kernel.jsonl").read_text().splitlines()]
    for line in lines:
        change(line)
    path = tmp_path / f"{name}.kernel.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return disagreements(analyze(DATA / f"{name}.pcapng", keep=True), read_kernel_file(path))


def scaled(key: str, factor: float, state: str = "ESTABLISHED"):
    def change(line: dict) -> None:
        if line.get(key) and line.get("state") == state:
            line[key] = int(line[key] * factor)
    return change


@pytest.mark.parametrize("name, change, said", [
    ("tail-loss-rto", scaled("rto_us", 1.5), "RTO was 330 ms"),                  # sed on rto_us: a wrong answer right
    ("tail-loss-rto", scaled("rto_us", 0.8), "RTO was 176 ms"),
    ("syn-loss", scaled("rto_us", 3, "SYN_SENT"), "in SYN_SENT"),
    ("zero-window", scaled("srtt_us", 0.5), "round trip"),
    ("slow-start", scaled("cwnd", 0.5), "segments in flight"),
    ("slow-start", lambda line: line.update(total_retrans=line["total_retrans"] + 1)
     if line.get("total_retrans") is not None else None, "retransmissions"),
    ("aimd", lambda line: line.update(t=line["t"] + 10 ** 10), "outside the capture's span"),
    ("aimd", lambda line: line.update(t=line["t"] - 10 ** 10), "outside the capture's span"),
])
def test_a_kernel_file_edited_alone_disagrees_with_its_capture(tmp_path, name, change, said):
    found = forged(tmp_path, name, change)
    assert found and any(said in line for line in found), found


def test_a_socket_the_capture_does_not_hold_is_not_held_to_its_span(tmp_path):
    """The sampler sees every socket of the namespaces, such as a readiness check's in TIME_WAIT."""
    lines = (DATA / "tail-loss-rto.kernel.jsonl").read_text().splitlines()
    other = {**json.loads(lines[0]), "local": "10.77.1.3:39999", "state": "TIME_WAIT"}
    other["t"] -= 5 * 10 ** 9
    path = tmp_path / "tail-loss-rto.kernel.jsonl"
    path.write_text(json.dumps(other) + "\n" + "\n".join(lines) + "\n")
    assert disagreements(analyze(DATA / "tail-loss-rto.pcapng", keep=True), read_kernel_file(path)) == []


def test_answers_resting_on_a_kernel_file_that_disagrees_are_not_counted(tmp_path):
    from lab.course.identity import Evidence, Identity
    from lab.teach.dynamics import Dynamics

    folder = tmp_path / "work"
    folder.mkdir()
    for suffix in (".pcapng", ".kernel.jsonl"):
        (folder / f"tail-loss-rto{suffix}").write_bytes((DATA / f"tail-loss-rto{suffix}").read_bytes())
    truth = Dynamics(folder / "tail-loss-rto.pcapng", bulk=True).reveal("rto_before_it_ms")
    entry = {"exercise": "rto_before_it_ms", "answer": truth, "capture": "tail-loss-rto.pcapng",
             "checker": "Dynamics", "options": {"bulk": True}}
    theirs = Identity(True, (Evidence("token", True, "its requests carry your token"),))
    agreeing = grading.Study(theirs)
    assert grading._check(entry, folder, {"tail-loss-rto.pcapng": agreeing}, {}) [0] is True
    disagreeing = grading.Study(theirs, kernel=["the server's kernel says its RTO was 330 ms"])
    counted, feedback = grading._check(entry, folder, {"tail-loss-rto.pcapng": disagreeing}, {})
    assert counted is False and "kernel file beside tail-loss-rto.pcapng disagrees" in feedback


# --- a loaded machine ----------------------------------------------------------------------

def shifted_capture(source: Path, target: Path, after_syn_ack_s: float) -> Path:
    """The capture with every frame after the SYN/ACK moved by ``after_syn_ack_s``: a handshake
    that took that much longer (a loaded machine) or shorter (not this link)."""
    from scapy.all import rdpcap, wrpcap

    frames = rdpcap(str(source))
    seen_syn_ack = False
    for frame in frames:
        if seen_syn_ack:
            frame.time = frame.time + after_syn_ack_s
        if frame.haslayer("TCP") and frame["TCP"].flags == "SA":
            seen_syn_ack = True
    wrpcap(str(target), frames)
    return target


def test_a_loaded_machine_only_adds_delay_and_the_verdict_shows_every_piece_of_evidence(tmp_path):
    """bob, zoe and obrien were told their own capture was not theirs: "handshake took 28.1 ms,
    your link's delay is 18.0 ms". Load adds delay; only a faster handshake than the link contradicts."""
    from lab.course import identity
    from lab.inspect.lab_port import port_of_connections
    from lab.scenarios.model import load

    scenario = load("tail-loss-rto", 1)
    delay = max(d.delay_ms for d in (scenario.to_client, scenario.to_server) if d and d.delay_ms)
    variant = Variant("bob", 1, "00000000", 2_000_000)
    name = "tail-loss-rto-reno-seed1.pcapng"

    def verdict(path: Path):
        capture = analyze(path, keep=True)
        return identity.judge(capture, name, variant, port_of_connections(capture.connections))

    assert verdict(DATA / "tail-loss-rto.pcapng").yours is True
    loaded = verdict(shifted_capture(DATA / "tail-loss-rto.pcapng", tmp_path / "loaded.pcap", 0.010))
    assert loaded.yours is True and "load only adds delay" in loaded.reason
    assert "lost segment" in " ".join(e.what for e in loaded.evidence)
    faster = verdict(shifted_capture(DATA / "tail-loss-rto.pcapng", tmp_path / "faster.pcap", -delay / 2000))
    assert faster.yours is False and "faster than your link" in faster.reason
    assert "(but " in faster.reason                               # what matched is shown too


# --- bounded work per archive ----------------------------------------------------------------

def syn_flood_capture(path: Path, connections: int) -> Path:
    """A pcap of ``connections`` SYN-only connections (the 21 MB, 300,000-connection capture)."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    frames = []
    for number in range(connections):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, bytes([10, 77, 0, 3]), bytes([10, 77, 0, 2]))
        tcp = struct.pack("!HHIIBBHHH", 1024 + number % 60000, 7070, number * 7919, 0, 0x50, 0x02, 65535, 0, 0)
        ether = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
        packet = ether + ip[:2] + ip[2:10] + ip[10:] + tcp
        frames.append(struct.pack("<IIII", 1_700_000_000 + number // 1000, number % 1000 * 1000, len(packet),
                                  len(packet)) + packet)
    path.write_bytes(header + b"".join(frames))
    return path


def test_a_capture_of_300000_connections_is_refused_in_one_line_and_the_class_is_graded(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    flood = syn_flood_capture(tmp_path / "flood.pcap", 300_000).read_bytes()
    answers = b'{"exercise": "syn_sequence_number", "answer": 1, "capture": "a.pcap", "checker": "Exercises"}\n'
    zip_with(inbox / "flood.zip", members={"answers.jsonl": answers, "a.pcap": flood})
    zip_with(inbox / "good.zip", members={"a.pcapng": exchange_capture(tmp_path / "p.pcapng", "ECHO hi").read_bytes()},
             manifest={"format": "tcplab-submission/1", "student": "bob", "course": "net101", "lab_version": "1",
                       "files": {"a.pcapng": {"size": 0, "sha256": ""}}})
    key = Course.from_secret("net101", b"s" * 32)
    result = grading.grade_all(inbox, ["alice", "bob"], key, tmp_path / "out", workers=2)
    verdicts = {graded.archive: graded.verdict for graded in result.results}
    assert "refused: more than 1,000 connections" in verdicts["flood.zip"] and "\n" not in verdicts["flood.zip"]
    assert "good.zip" in verdicts


@pytest.mark.slow          # it fills a worker's memory to its cap
def test_memory_an_archive_would_take_past_the_workers_cap_is_one_line(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    flood = syn_flood_capture(tmp_path / "flood.pcap", 300_000).read_bytes()
    zip_with(inbox / "flood.zip", members={"a.pcap": flood})
    monkeypatch.setattr(grading, "MAX_CAPTURE_CONNECTIONS", 10 ** 9)         # the refusals off: the cap decides
    monkeypatch.setattr(grading, "MAX_CAPTURE_FRAMES", 10 ** 9)
    monkeypatch.setattr(grading, "WORKER_MEMORY_BYTES", 400 << 20)
    key = Course.from_secret("net101", b"s" * 32)
    [graded] = grading.grade_all(inbox, ["alice"], key, tmp_path / "out", workers=1).results
    assert graded.verdict.startswith("not graded: MemoryError") or "not graded: BrokenProcessPool" in graded.verdict
    assert "\n" not in graded.verdict


# --- what counts, and what is written ----------------------------------------------------------

def test_one_rule_for_an_exercise_answered_twice_and_the_csvs_agree_with_the_verdict(tmp_path, monkeypatch, course):
    """alice's verdict line said 22 right while students.csv said 21: the capture whose name sorted
    last won. Now the last answer recorded counts, everywhere."""
    secret, course_file = course
    key = read_course(course_file)
    from lab.teach.exercises import Exercises

    monkeypatch.setenv("TCPLAB_SUBMISSIONS", str(tmp_path / "alice"))
    from lab.course.submitting import submit
    from lab.course.variant import set_student
    from lab.teach.answers import record

    set_student("alice", course_file)
    one = exchange_capture(tmp_path / "z-one.pcapng", f"ECHO one {key.variant('alice').tag}", client_port=41001)
    two = exchange_capture(tmp_path / "a-two.pcapng", f"ECHO two {key.variant('alice').tag}", client_port=41002)
    Exercises(one).check("syn_sequence_number", Exercises(one).reveal("syn_sequence_number"))      # right
    Exercises(two).check("syn_sequence_number", 7)                                                 # then wrong
    record("Exercises", {}, two, "no_such_exercise_of_mine", 1, True)      # an answer no notebook asks for
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    submit(say=lambda line: None).rename(inbox / "alice.zip")
    result = grading.grade_all(inbox, ["alice"], read_secret(secret), tmp_path / "out", workers=1)
    graded = result.latest["alice"]
    assert graded.verdict.startswith("graded: 0 of 1 answers right")
    [row] = list(csv.DictReader(open(tmp_path / "out" / "grades.csv")))
    assert row["capture"] == "a-two.pcapng" and row["correct"] == "0"
    students = next(csv.DictReader(open(tmp_path / "out" / "students.csv")))
    assert students["right"] == "0" and "no_such_exercise_of_mine" not in students
    assert any("exercises this course does not have: no_such_exercise_of_mine" in said
               for said in result.suspicions())


def test_the_lms_exports_hold_every_student_with_points_from_the_course_file(tmp_path, monkeypatch, course):
    secret, course_file = course
    with open(course_file, "a") as out:
        out.write('[points]\nsyn_sequence_number = 2\nfirst_request_length = 3\nhandshake_rtt_ms = 5\n')
    weights = grading.read_points(course_file)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    submitted(tmp_path, monkeypatch, course_file, "alice").rename(inbox / "alice.zip")
    submitted(tmp_path, monkeypatch, course_file, "bob", answers={"syn_sequence_number": "right"}).rename(
        inbox / "bob.zip")
    roster = parse_roster('Student,ID,SIS User ID,SIS Login ID,Section\n"Doe, Alice",101,,alice,A\n'
                          '"=HYPERLINK(""x"")",102,,bob,A\nCarl,103,,carl,A\n')
    grading.grade_all(inbox, roster, read_secret(secret), tmp_path / "out", workers=2, weights=weights)
    canvas = list(csv.reader(open(tmp_path / "out" / "canvas.csv")))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "tcplab net101"]
    assert canvas[1] == ["Doe, Alice", "101", "", "alice", "", "10"]
    assert canvas[2][0] == "'=HYPERLINK(\"x\")" and canvas[2][3] == "bob" and canvas[2][5] == "2"
    assert canvas[3][5] == "0"
    moodle = list(csv.DictReader(open(tmp_path / "out" / "moodle.csv")))
    assert moodle[0]["tcplab net101 total"] == "10" and moodle[0]["handshake_rtt_ms"] == "5"
    variants = {row["student"]: row for row in csv.DictReader(open(tmp_path / "out" / "variants.csv"))}
    assert variants["alice"]["token"] == read_course(course_file).variant("alice").token
    assert (tmp_path / "out" / "feedback" / "alice.txt").read_text().startswith("alice: 3 of 3 answers right, 10 of 10")
    with pytest.raises(LabError, match="each must be an exercise of the lab"):
        (tmp_path / "bad.toml").write_text('name = "x"\n[points]\nnot_an_exercise = 1\n')
        grading.read_points(tmp_path / "bad.toml")


def test_regrading_one_student_leaves_the_others_results_as_they_were(tmp_path, monkeypatch, course):
    secret, course_file = course
    inbox = tmp_path / "inbox"
    for student in ("alice", "bob"):
        (inbox / student).mkdir(parents=True)
    submitted(tmp_path, monkeypatch, course_file, "alice", answers={"syn_sequence_number": 7}).rename(
        inbox / "alice" / "a.zip")
    submitted(tmp_path, monkeypatch, course_file, "bob").rename(inbox / "bob" / "b.zip")
    out = tmp_path / "out"
    key = read_secret(secret)
    grading.grade_all(inbox, ["alice", "bob"], key, out, workers=1)
    bob_before = [row for row in csv.reader(open(out / "grades.csv")) if row[0] == "bob"]
    bob_work = sorted(p.relative_to(out) for p in (out / "work").rglob("*") if "bob" in str(p))
    (inbox / "alice" / "a.zip").unlink()
    submitted(tmp_path, monkeypatch, course_file, "alice").rename(inbox / "alice" / "a2.zip")
    (inbox / "bob" / "b.zip").write_bytes(b"bob's archive, broken since: not read again")
    result = grading.grade_all(inbox, ["alice", "bob"], key, out, workers=1, only="Alice")
    assert result.right("alice") == 3 and result.right("bob") == 3
    assert [row for row in csv.reader(open(out / "grades.csv")) if row[0] == "bob"] == bob_before
    assert sorted(p.relative_to(out) for p in (out / "work").rglob("*") if "bob" in str(p)) == bob_work
    with pytest.raises(LabError, match="nobody of that id"):
        grading.grade_all(inbox, ["alice", "bob"], key, out, workers=1, only="mallory")


# --- a class of 20 --------------------------------------------------------------------------

def test_a_class_of_20_with_three_kinds_of_cheating_is_graded_and_every_cheat_named(tmp_path, monkeypatch, course):
    """17 honest students; carol hands in alice's capture; dave a copy of bob's with his own token
    patched in; erin an archive, in her folder, that says it is frank's."""
    secret, course_file = course
    key = read_course(course_file)
    roster = [f"s{number:02d}" for number in range(15)] + ["alice", "bob", "carol", "dave", "erin", "frank"]
    roster.remove("s14")
    inbox = tmp_path / "inbox"
    captures = {}
    for number, student in enumerate(roster):
        (inbox / student).mkdir(parents=True)
        if student in ("carol", "dave", "erin"):
            continue
        captures[student] = exchange_capture(tmp_path / f"{student}.pcapng", f"ECHO hi {key.variant(student).tag}",
                                             client_port=42000 + number)
        made = student_submits(tmp_path, monkeypatch, student, course_file, captures[student], RIGHT)
        made.rename(inbox / student / made.name)
    made = student_submits(tmp_path, monkeypatch, "carol", course_file, captures["alice"], RIGHT)
    made.rename(inbox / "carol" / made.name)
    patched = tmp_path / "dave.pcapng"
    patched.write_bytes(captures["bob"].read_bytes().replace(key.variant("bob").token.encode(),
                                                             key.variant("dave").token.encode()))
    made = student_submits(tmp_path, monkeypatch, "dave", course_file, patched, RIGHT)
    made.rename(inbox / "dave" / made.name)
    frank_again = exchange_capture(tmp_path / "frank2.pcapng", f"ECHO again {key.variant('frank').tag}",
                                   client_port=43000)
    made = student_submits(tmp_path, monkeypatch, "frank", course_file, frank_again, RIGHT)
    made.rename(inbox / "erin" / "from-erin.zip")                              # erin hands in "frank's" work
    out = tmp_path / "out"
    result = grading.grade_all(inbox, read_roster_text(tmp_path, roster), read_secret(secret), out, workers=2)
    honest = [s for s in roster if s not in ("bob", "carol", "dave", "erin")]
    assert all(result.right(student) == 3 for student in honest), {s: result.right(s) for s in honest}
    assert result.right("carol") == 0 and result.right("dave") == 0 and result.right("bob") == 0
    assert result.right("erin") == 0
    report = report_of(out)
    assert "copy: bob and dave handed in captures of one run of the lab" in report
    assert "carol: alice.pcapng is not theirs: its requests carry the token" in report and "(alice)" in report
    assert "erin/from-erin.zip, collected from erin (folder erin/), says it is frank's" in report
    assert "erin: frank2.pcapng is not theirs" in report
    assert "copy: alice and carol" in report and "carry alice's marks only" in report     # alice stands
    canvas = list(csv.reader(open(out / "canvas.csv")))
    assert len(canvas) == 21 and {row[3] for row in canvas[1:]} == set(roster)
    table = {row["student"]: row for row in csv.DictReader(open(out / "students.csv"))}
    assert table["alice"]["points"] == "3" and table["dave"]["suspicions"] != "0"


def report_of(out: Path) -> str:
    """report.txt with its lines unwrapped (it is wrapped at 80 columns, each line's rest indented)."""
    text = (out / "report.txt").read_text()
    assert all(len(line) <= 80 or " " not in line.strip() for line in text.splitlines())
    return re.sub(r"\n {4,}", " ", text)


def read_roster_text(tmp_path: Path, ids: list[str]) -> Roster:
    path = tmp_path / "roster.csv"
    path.write_text("id,name\n" + "".join(f"{student},{student.title()}\n" for student in ids))
    return read_roster(path)


def test_gradebook_cells_and_lines_are_inert():
    assert gradebook.cell("=1+1") == "'=1+1" and gradebook.cell("\x1b[2J") == "\\x1b[2J"
    assert canonical("ÉMILE") == canonical("émile")


def test_a_map_file_larger_than_a_map_is_refused_in_one_line_not_cut_silently(tmp_path):
    """--map was read whole and then cut at 8 MiB; now it is read bounded and refused past that."""
    path = tmp_path / "map.csv"
    path.write_bytes(b"archive,student\n" + b"a.zip,alice\n" * 800_000)
    with pytest.raises(LabError, match="is too large to be a --map file") as caught:
        collected.read_map(path)
    assert "\n" not in str(caught.value)
