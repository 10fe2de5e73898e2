"""A room's signature on the captures its broker made: who, when, which scenario and seed, which bytes.

In a room the broker makes every capture on the student's behalf and writes, beside
``NAME.pcapng``, ``NAME.pcapng.sig``: a small JSON object naming the student, the time,
the scenario and its seed, and the SHA-256 of the capture and of its kernel file, with
an HMAC-SHA256 over all of it. The HMAC's key is derived from the course's secret
(lab.course.variant: ``Course.room``), which only the broker and the instructor hold,
so a student can neither alter a signed capture nor sign one made elsewhere; the grader
(lab.course.grading) checks it where the course says its room made the captures.

Why a file beside the capture and not a pcapng comment: the kernel file is signed too,
and a pcap (not ng) capture has nowhere to hold a comment.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from pathlib import Path

FORMAT = "tcplab-room-signature/1"
SUFFIX = ".sig"
MAX_SIGNATURE_BYTES = 4096


def capture_key(room_key: bytes) -> bytes:
    """The key that signs captures, derived from the room's (each use of the room's key its own)."""
    return hmac.new(room_key, b"tcplab room captures", hashlib.sha256).digest()


def kernel_name_of(capture_name: str) -> str:
    """The kernel file's name beside a capture of this name (as lab.inspect.kernel.kernel_file_of finds it)."""
    from lab.inspect.kernel import KERNEL_SUFFIX

    return Path(capture_name).stem + KERNEL_SUFFIX


def signature_file_of(capture: Path) -> Path:
    return capture.with_name(capture.name + SUFFIX)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _mac(key: bytes, fields: dict) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(capture_key(key), canonical.encode(), hashlib.sha256).hexdigest()


def sign(room_key: bytes, room: str, student: str, files: list[Path], scenario: str | None = None,
         seed: int | None = None) -> Path:
    """Sign ``files`` (the capture first, then its kernel file if any) for ``student``; the signature's path."""
    fields = {"format": FORMAT, "room": room, "student": student,
              "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "scenario": scenario, "seed": seed, "files": {path.name: _digest(path) for path in files}}
    out = signature_file_of(files[0])
    out.write_text(json.dumps({**fields, "mac": _mac(room_key, fields)}, indent=1) + "\n")
    return out


def problem(room_key: bytes, capture_name: str, files: dict[str, bytes], student: str) -> str | None:
    """Why the capture ``capture_name`` among ``files`` (a submission's, name -> bytes) is not
    signed for ``student`` by the room; None when its signature holds."""
    raw = files.get(capture_name + SUFFIX)
    if raw is None:
        return "unsigned: the course's room signs every capture it makes, and this one has no signature"
    try:
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise ValueError("too large")
        signed = json.loads(raw)
        fields = {key: value for key, value in signed.items() if key != "mac"}
        mac = signed["mac"]
        if not isinstance(mac, str) or fields.get("format") != FORMAT or not isinstance(fields.get("files"), dict):
            raise ValueError("not a signature")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "its signature file is not one the room writes"
    if not hmac.compare_digest(mac, _mac(room_key, fields)):
        return "its signature is not the room's (made or changed outside it)"
    if fields.get("student") != student:
        return f"signed for another student, not {student}"
    digests = fields["files"]
    if capture_name not in digests:
        return "its signature is about another capture"
    kernel = kernel_name_of(capture_name)
    if kernel in files and kernel not in digests:
        return f"{kernel} beside it was not made by the room (the room signs the kernel files it makes)"
    for name, digest in digests.items():
        data = files.get(name)
        if data is None:
            return f"{name}, which the room signed with it, is not in the submission"
        if hashlib.sha256(data).hexdigest() != digest:
            return f"{name} was altered after the room signed it"
    return None
