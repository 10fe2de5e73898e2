"""A student's answers, recorded as the notebooks check them, for `invoke submit`.

Only when a student is set (`invoke student ID`): a self-learner's answers are nobody's
business. Each check appends one JSON line to submissions/answers.jsonl: the exercise,
the answer as given, which capture it was about (name, SHA-256, and where it is, which
`invoke submit` needs and leaves out of the archive) and how the checker was made (so
the grader can make the same one). The verdict is written too, for the
student's own record; the grader never reads it; it checks again.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from lab.paths import STUDENT_FILE, submissions_dir

ANSWERS_NAME = "answers.jsonl"


def answers_file() -> Path:
    return submissions_dir() / ANSWERS_NAME


def plain(answer: Any) -> Any:
    """The answer as JSON can hold it: numbers, text, truth values and lists of them as they
    are; anything else as its repr (a grader then finds it in the wrong form)."""
    if answer is None or isinstance(answer, (bool, int, float, str)):
        return answer
    if isinstance(answer, (list, tuple)):
        return [plain(item) for item in answer]
    return repr(answer)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _digest_of(path: str, mtime_ns: int, size: int) -> str:
    """A capture's SHA-256, read once while it is unchanged: a notebook checks many answers
    about the same 3 MB capture."""
    return file_digest(Path(path))


def record(checker: str, options: dict[str, Any], capture: Path, exercise: str, answer: Any,
           correct: bool | None) -> bool:
    """Append one answer if a student is set (`invoke student` wrote their file; `invoke
    submit` checks it); True if it was recorded."""
    if answer is ... or not (submissions_dir() / STUDENT_FILE).is_file():
        return False
    info = capture.stat()
    entry = {"exercise": exercise, "answer": plain(answer), "capture": capture.name, "path": str(capture.resolve()),
             "sha256": _digest_of(str(capture.resolve()), info.st_mtime_ns, info.st_size), "checker": checker,
             "options": options, "correct": correct,
             "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = answers_file()
    path.parent.mkdir(exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
    return True
