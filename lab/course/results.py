"""A class's results: each archive's (Graded, its Rows), and what follows from them all together
(Grading): which archive of each student counts, copies across the class, points, suspicions.

lab.course.grading makes them; lab.course.gradebook writes them.
"""

from __future__ import annotations

import dataclasses
import datetime

from lab.course import copies
from lab.course.students import Roster
from lab.course.variant import Course


@dataclasses.dataclass
class Row:
    student: str
    exercise: str
    capture: str
    answer: str
    correct: bool
    feedback: str
    points: float = 0.0


@dataclasses.dataclass
class Graded:
    """One archive's result: its one-line verdict, and what the class-wide checks need."""

    archive: str
    student: str
    verdict: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    arrived: str = ""
    accepted: bool = False
    how: str = ""                                             # how the course says whose it is ("" = manifest)
    findings: list[str] = dataclasses.field(default_factory=list)
    captures: dict[str, str] = dataclasses.field(default_factory=dict)     # capture -> why not theirs
    kernel: dict[str, str] = dataclasses.field(default_factory=dict)       # capture -> how its kernel file disagrees
    prints: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # capture -> lab.course.copies
    late: bool = False


def course_exercises() -> list[str]:
    """Every exercise a checker of the lab knows."""
    from lab.teach.dynamics import DYNAMICS_QUESTIONS
    from lab.teach.exercises import QUESTIONS
    from lab.teach.overlay import OVERLAY_QUESTIONS

    return sorted({**QUESTIONS, **DYNAMICS_QUESTIONS, **OVERLAY_QUESTIONS})


@dataclasses.dataclass
class Grading:
    """A class's results and what follows from them all together: which archive counts,
    copies across the class, points, suspicions."""

    results: list[Graded]
    roster: Roster
    course: Course
    weights: dict[str, float]
    deadline: datetime.datetime | None = None
    latest: dict[str, Graded] = dataclasses.field(default_factory=dict)
    superseded: list[tuple[Graded, Graded]] = dataclasses.field(default_factory=list)
    copied: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        order = sorted((graded for graded in self.results if graded.accepted),
                       key=lambda graded: (graded.student, graded.arrived, graded.archive))
        for graded in order:
            if graded.student in self.latest:
                self.superseded.append((self.latest[graded.student], graded))
            self.latest[graded.student] = graded
        prints = {student: graded.prints for student, graded in self.latest.items()}
        self.copied = copies.shared(prints)
        held = copies.captures_in_copies(self.copied, prints)
        for student, graded in self.latest.items():
            for row in graded.rows:
                # The author of a copied capture is the one whose variant it carries: when the
                # classmate's copy is not theirs, this one stands; when both pass (a patched
                # copy), nothing tells who made it, and it counts for neither until the
                # instructor decides.
                both_pass = [classmate for classmate, theirs in held.get(student, {}).get(row.capture, [])
                             if theirs not in self.latest[classmate].captures]
                if both_pass and row.correct:
                    row.correct, row.feedback = False, (
                        f"not counted: {row.capture} comes from the same run of the lab as a capture "
                        f"{both_pass[0]} handed in, and both carry their own student's marks (see report.txt)")
                row.points = self.weights.get(row.exercise, 0.0) if row.correct else 0.0

    @property
    def columns(self) -> list[str]:
        return list(self.weights)

    @property
    def possible(self) -> float:
        return sum(self.weights.values())

    def right(self, student: str) -> int:
        graded = self.latest.get(student)
        return sum(row.correct for row in graded.rows) if graded else 0

    def marks(self, student: str) -> dict[str, str]:
        """Each exercise the student's counted answers are about: its points, as a cell shows them."""
        graded = self.latest.get(student)
        return {row.exercise: f"{row.points:g}" for row in graded.rows} if graded else {}

    def points(self, student: str) -> float:
        graded = self.latest.get(student)
        return sum(row.points for row in graded.rows) if graded else 0.0

    @property
    def late_policy(self) -> str:
        if self.deadline is None:
            return "late work: no --deadline given; only archives the LMS marked late are marked late"
        return (f"late work: an archive that arrived after {self.deadline.isoformat()} (or that the LMS marked late) "
                "is marked late in students.csv and below; its points are not changed: apply the course's late "
                "policy in the LMS")

    def suspicions(self) -> list[str]:
        said = []
        for (one, other), (evidence, captures) in self.copied.items():
            said.append(f"copy: {one} and {other} handed in captures of one run of the lab ({evidence}): "
                        + "; ".join(self._who_stands(one, other, pair) for pair in captures[:4]))
        for student, graded in self.latest.items():
            said += [f"{student}: {line}" for line in self._own(graded)]
        for older, newer in self.superseded:
            said.append(f"{older.student}: {older.archive} (arrived {older.arrived}) was replaced by {newer.archive} "
                        f"(arrived {newer.arrived})")
        for graded in self.results:
            if graded.accepted and graded is not self.latest.get(graded.student):
                said += [f"{graded.student}: {finding}" for finding in graded.findings]
        return said

    def _who_stands(self, one: str, other: str, captures: tuple[str, str]) -> str:
        """Whose answers about one copied capture count: the student whose marks (token, BULK
        size, seed) it carries; nobody's when both carry their own (one was patched)."""
        mine, theirs = captures
        stands = [student for student, capture in ((one, mine), (other, theirs))
                  if capture not in self.latest[student].captures]
        named = f"{one}'s {mine} and {other}'s {theirs}"
        if len(stands) == 2:
            return (f"{named} both carry their own student's marks (one was patched): counted for neither until "
                    "you decide (take the copy's archive out and grade again)")
        if len(stands) == 1:
            return f"{named} carry {stands[0]}'s marks only"
        return f"{named} carry neither's marks"

    def _own(self, graded: Graded) -> list[str]:
        lines = list(graded.findings)
        lines += [f"{capture} is not theirs: {reason}" for capture, reason in graded.captures.items()]
        lines += [f"the kernel file beside {capture} disagrees with it: {reason}; answers resting on it not counted"
                  for capture, reason in graded.kernel.items()]
        if graded.late:
            lines.append(f"late: {graded.archive} arrived {graded.arrived}")
        return lines

    def suspicions_of(self, student: str) -> list[str]:
        graded = self.latest.get(student)
        if graded is None:
            return []
        mine = [f"a copy: captures of one run of the lab are in both {one}'s and {other}'s submissions "
                f"({evidence}): " + "; ".join(self._who_stands(one, other, pair) for pair in captures[:4])
                for (one, other), (evidence, captures) in self.copied.items() if student in (one, other)]
        return mine + self._own(graded)
