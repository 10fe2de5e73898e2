"""A room's signatures on its captures: the grader accepts an intact one and rejects every other.

The broker signs with lab.host.room.signatures.sign (as here); in a course whose file says
``room = true``, invoke grade holds each capture to its signature. The room itself, making
and signing real captures, is tested in tests/test_room.py.
"""

from __future__ import annotations

import json

import pytest

from lab.course import grading
from lab.course.students import file_part
from lab.course.variant import course_uses_room, create, read_course, read_secret
from lab.host.room import signatures
from tests.test_course import exchange_capture, student_submits
from tests.test_grading_trust import RIGHT


@pytest.fixture
def room_course(tmp_path):
    secret, course_file = create("net101", tmp_path / "course", room=True)
    return secret, course_file, read_secret(secret)


def capture_of(tmp_path, course_file, student, line="ECHO hi"):
    tag = read_course(course_file).variant(student).tag
    return exchange_capture(tmp_path / f"{file_part(student)}.pcapng", f"{line} {tag}", client_port=40000 + len(student))


def hand_in(tmp_path, monkeypatch, course_file, student, capture, inbox):
    made = student_submits(tmp_path, monkeypatch, student, course_file, capture, RIGHT)
    (inbox / student).mkdir(parents=True)
    made.rename(inbox / student / made.name)


def test_the_course_file_says_the_room_and_only_the_secret_knows_its_key(room_course, tmp_path):
    secret, course_file, course = room_course
    assert course_uses_room(course_file)
    assert course.room is not None and read_course(course_file).room is None       # students never have it
    assert not course_uses_room(create("plain", tmp_path / "plain")[1])


def test_the_grader_accepts_an_intact_signature_and_rejects_altered_unsigned_and_borrowed_ones(
        tmp_path, monkeypatch, room_course):
    secret, course_file, course = room_course
    inbox = tmp_path / "inbox"
    made = {student: capture_of(tmp_path, course_file, student) for student in ("alice", "bob", "carol", "dave")}
    signatures.sign(course.room, "room1", "alice", [made["alice"]], scenario=None, seed=None)
    signatures.sign(course.room, "room1", "bob", [made["bob"]])
    exchange_capture(made["bob"], f"ECHO other {read_course(course_file).variant('bob').tag}",
                     client_port=41000)                                     # bob's capture, changed after signing
    signatures.sign(course.room, "room1", "alice", [made["dave"]])          # signed, but for alice
    for student, capture in made.items():
        hand_in(tmp_path, monkeypatch, course_file, student, capture, inbox)
    result = grading.grade_all(inbox, list(made), course, tmp_path / "out", workers=2, signed=True)
    verdicts = {graded.student: graded for graded in result.results}
    assert result.right("alice") == 3 and verdicts["alice"].captures == {}
    assert "altered after the room signed it" in verdicts["bob"].captures["bob.pcapng"]
    assert verdicts["carol"].captures["carol.pcapng"].startswith("unsigned")
    assert "signed for another student" in verdicts["dave"].captures["dave.pcapng"]
    for student in ("bob", "carol", "dave"):
        assert result.right(student) == 0
    unsigned_course = grading.grade_all(inbox, list(made), course, tmp_path / "out2", workers=2)
    assert unsigned_course.right("carol") == 3                 # without room = true, nothing is asked of them


def test_a_signature_forged_without_the_key_or_a_kernel_file_added_later_is_refused(tmp_path, room_course):
    secret, course_file, course = room_course
    capture = capture_of(tmp_path, course_file, "alice")
    signature = signatures.sign(course.room, "room1", "alice", [capture])
    files = {capture.name: capture.read_bytes(), signature.name: signature.read_bytes()}
    assert signatures.problem(course.room, capture.name, files, "alice") is None
    assert "not the room's" in signatures.problem(b"k" * 32, capture.name, files, "alice")
    fields = json.loads(signature.read_bytes())
    fields["student"] = "bob"                                        # the MAC no longer holds
    forged = {**files, signature.name: json.dumps(fields).encode()}
    assert "not the room's" in signatures.problem(course.room, capture.name, forged, "bob")
    with_kernel = {**files, "alice.kernel.jsonl": b'{"t": 1}\n'}
    assert "not made by the room" in signatures.problem(course.room, capture.name, with_kernel, "alice")
    assert "not one the room writes" in signatures.problem(course.room, capture.name,
                                                          {**files, signature.name: b"\x00" * 10}, "alice")
