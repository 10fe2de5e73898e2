"""`invoke submit`: the student's recorded answers and the captures they were about, in one zip."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from lab import __version__
from lab.course import archive
from lab.course.students import file_part
from lab.course.variant import current
from lab.errors import LabError
from lab.host.room.signatures import signature_file_of
from lab.inspect.kernel import kernel_file_of
from lab.paths import PROJECT_ROOT, shown, submissions_dir
from lab.teach.answers import answers_file, file_digest

BUNDLED = PROJECT_ROOT / "notebooks" / "data"


def recorded_answers() -> list[dict]:
    """The answers recorded on this machine, oldest first (a damaged line is skipped)."""
    path = answers_file()
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("capture"), str):
            entries.append(entry)
    return entries[-archive.MAX_ANSWERS:]


def submit(extra: list[str] | None = None, say=print) -> Path:
    """Pack the answers and their captures (and ``extra`` captures) into submissions/; its path."""
    found = current()
    if found is None:
        raise LabError("no student is set on this machine: run invoke student ID --course COURSE_FILE first")
    course, variant = found
    answers = recorded_answers()
    files: dict[str, Path] = {}
    kept, passed_over = [], set()
    for entry in answers:
        path = Path(str(entry.get("path", "")))
        if BUNDLED in path.parents:
            passed_over.add(f"{entry['capture']} (bundled with the lab: study your own capture)")
            continue
        if not path.is_file() or file_digest(path) != entry.get("sha256"):
            passed_over.add(f"{entry['capture']} (changed or gone since you answered: check your answers again)")
            continue
        files[path.name] = path
        kept.append({key: value for key, value in entry.items() if key != "path"})
    for name in extra or []:
        path = Path(name).expanduser()
        if not path.is_file():
            raise LabError(f"no capture at {name}: name a file in captures/")
        files[path.name] = path
    for capture in list(files.values()):
        kernel, signature = kernel_file_of(capture), signature_file_of(capture)
        if kernel is not None:
            files[kernel.name] = kernel
        if signature.is_file():                  # a room's broker signed it (lab.host.room.signatures)
            files[signature.name] = signature
    for reason in sorted(passed_over):
        say(f"answers about {reason} are left out")
    if not kept and not extra:
        raise LabError("nothing to submit: no answer about a capture of your own is recorded (check them in the "
                       "notebooks with ex.check after invoke student)")
    size = sum(path.stat().st_size for path in files.values())
    if size > archive.MAX_TOTAL_BYTES or len(files) + 2 > archive.MAX_MEMBERS:
        raise LabError(f"{len(files)} files of {size:,} bytes: more than a submission may hold "
                       f"({archive.MAX_MEMBERS - 2} files, {archive.MAX_TOTAL_BYTES:,} bytes)")
    folder = submissions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = folder / f"{course.name}-{file_part(variant.student)}-{stamp}.zip"
    archive.write(out, variant.student, course.name, __version__, kept, files)
    say(f"{shown(out)}: {len(kept)} answers, {len(files)} files; hand this file in")
    return out
