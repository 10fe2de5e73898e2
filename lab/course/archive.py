"""A submission: one zip a student makes with `invoke submit` and an instructor grades.

Inside, flat (no folders): ``manifest.json`` (who, which course, the lab's version, each
file's size and SHA-256), ``answers.jsonl`` (the recorded answers) and the captures with
their kernel samples.

To the grader an archive is data from a stranger, so :func:`read` trusts nothing in it:
the archive's size, the number of members, each member's size as read (not as the zip's
header claims: a zip bomb lies there), names (flat, plain, no two alike: no path
traversal), kinds (no links, no folders, no encryption), the manifest's form and every
hash. It reads into memory and writes nothing; a problem is one SubmissionError line.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import re
import stat
import zipfile
from pathlib import Path

from lab.errors import LabError

FORMAT = "tcplab-submission/1"
MANIFEST, ANSWERS = "manifest.json", "answers.jsonl"
MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ARCHIVE_BYTES = 64 << 20
MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 48 << 20
MAX_TOTAL_BYTES = 128 << 20
MAX_ANSWERS = 2_000


class SubmissionError(LabError):
    """A submission that cannot be graded, and why, in one line."""


@dataclasses.dataclass
class Submission:
    student: str
    course: str
    lab_version: str
    answers: list[dict]
    files: dict[str, bytes]          # captures and kernel samples, by name
    made: str = ""                   # when, as the student's machine said (orders a student's archives)


def write(path: Path, student: str, course: str, lab_version: str, answers: list[dict],
          files: dict[str, Path]) -> Path:
    """The archive at ``path``: the manifest, the answers, and ``files`` (name -> where it is)."""
    answers_text = "".join(json.dumps(entry) + "\n" for entry in answers).encode()
    listing = {ANSWERS: _describe(answers_text)}
    for name, source in files.items():
        listing[name] = _describe_file(source)
    manifest = {"format": FORMAT, "student": student, "course": course, "lab_version": lab_version,
                "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "files": listing}
    temporary = path.with_name(f".{path.name}.part")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
        archive.writestr(ANSWERS, answers_text)
        for name, source in files.items():
            archive.write(source, name)
    temporary.replace(path)
    return path


def _describe(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _describe_file(path: Path) -> dict:
    from lab.teach.answers import file_digest

    return {"size": path.stat().st_size, "sha256": file_digest(path)}


def read(path: Path) -> Submission:
    """A submission, checked through; a SubmissionError says what is wrong with it."""
    try:
        info = path.lstat()
    except OSError as error:
        raise SubmissionError(f"cannot read it: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SubmissionError("not a regular file (a link or a folder): left alone")
    if info.st_size > MAX_ARCHIVE_BYTES:
        raise SubmissionError(f"{info.st_size:,} bytes, more than a submission may be ({MAX_ARCHIVE_BYTES:,})")
    with open(path, "rb") as stream:
        raw = stream.read(MAX_ARCHIVE_BYTES + 1)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        members = _members(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as error:
        raise SubmissionError(f"not a readable zip: {error}") from None
    manifest = _manifest(members.pop(MANIFEST, None))
    listed = manifest["files"]
    for name, data in members.items():
        if name not in listed:
            raise SubmissionError(f"{name} is in the archive but not in its manifest")
        if listed[name] != _describe(data):
            raise SubmissionError(f"{name} does not match its manifest's size and SHA-256 (changed or damaged)")
    missing = sorted(set(listed) - set(members))
    if missing:
        raise SubmissionError(f"its manifest lists {', '.join(missing[:3])}, which the archive lacks")
    answers = _answers(members.pop(ANSWERS, b""))
    made = manifest["made"] if isinstance(manifest.get("made"), str) else ""
    return Submission(manifest["student"], manifest["course"], manifest["lab_version"], answers, members, made[:40])


def _members(archive: zipfile.ZipFile) -> dict[str, bytes]:
    entries = archive.infolist()
    if len(entries) > MAX_MEMBERS:
        raise SubmissionError(f"{len(entries)} files inside, more than a submission has ({MAX_MEMBERS})")
    members: dict[str, bytes] = {}
    total = 0
    for entry in entries:
        name = entry.filename
        if not MEMBER_NAME.fullmatch(name) or ".." in name:
            raise SubmissionError(f"a file inside is named {name[:60]!r}: only plain names, no folders or paths")
        if name in members:
            raise SubmissionError(f"{name} is in the archive twice")
        kind = stat.S_IFMT(entry.external_attr >> 16)
        if entry.is_dir() or kind not in (0, stat.S_IFREG):
            raise SubmissionError(f"{name} is not a regular file (a link or a folder): not read")
        if entry.flag_bits & 0x1:
            raise SubmissionError(f"{name} is encrypted")
        data = _read_bounded(archive, entry, min(MAX_MEMBER_BYTES, MAX_TOTAL_BYTES - total))
        total += len(data)
        members[name] = data
    return members


def _read_bounded(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, stopping at ``limit`` whatever its header says it holds."""
    with archive.open(entry) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise SubmissionError(f"{entry.filename} unpacks to more than {limit:,} bytes (a zip bomb, or far too "
                              "large a capture): not read further")
    return data


def _manifest(data: bytes | None) -> dict:
    if data is None:
        raise SubmissionError(f"no {MANIFEST}: not made by invoke submit")
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):       # RecursionError: nested too deep to read
        raise SubmissionError(f"its {MANIFEST} is not JSON (or nests too deep)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SubmissionError(f"its {MANIFEST} is not a {FORMAT} manifest")
    for key in ("student", "course", "lab_version"):
        if not isinstance(manifest.get(key), str) or not manifest[key] or len(manifest[key]) > 64:
            raise SubmissionError(f"its {MANIFEST} has no usable {key}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(entry, dict) and set(entry) == {"size", "sha256"} for entry in files.values()):
        raise SubmissionError(f"its {MANIFEST} does not list its files with size and sha256")
    return manifest


def _answers(data: bytes) -> list[dict]:
    """The recorded answers: each line a JSON object with the fields the grader reads, typed."""
    answers: list[dict] = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        if len(answers) >= MAX_ANSWERS:
            raise SubmissionError(f"more than {MAX_ANSWERS:,} answers")
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            raise SubmissionError(f"{ANSWERS} line {number} is not JSON (or nests too deep)") from None
        if not (isinstance(entry, dict) and isinstance(entry.get("exercise"), str)
                and isinstance(entry.get("capture"), str) and isinstance(entry.get("checker"), str)
                and isinstance(entry.get("options", {}), dict)):
            raise SubmissionError(f"{ANSWERS} line {number} lacks exercise, capture or checker")
        answers.append(entry)
    return answers
