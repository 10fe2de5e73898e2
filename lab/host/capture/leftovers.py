"""What a killed capture left in captures/: its working files, recovered or removed.

Every file a capture writes there while it works carries its owner's mark in its name
(lab.host.capture.owners), so this finds a dead owner's files whatever became of the
engine's container (with ``--rm`` it removes itself as soon as its stream ends). The
packets are not thrown away: the raw file is a pcap written record by record, so it is
cut after its last whole record and kept as ``NAME.recovered.pcap``. The rest (the
kernel samplers' parts, an annotation or a merge begun) is removed.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

from lab.host.capture.owners import MARK, dead_owner
from lab.host.capture.safe_files import (
    KERNEL_PART_SUFFIX,
    PART_SUFFIX,
    give_to_invoking_user,
    new_private_file,
    place,
    remove_if_regular,
)
from lab.inspect.formats import PCAP_MICROSECOND_MAGIC, PCAP_NANOSECOND_MAGIC

WORKING_SUFFIXES = (PART_SUFFIX, KERNEL_PART_SUFFIX, ".pcapng.tmp", ".tmp")
PCAP_HEADER, RECORD_HEADER = 24, 16
READ_SIZE = 1 << 20


def sweep(folder: Path) -> list[str]:
    """Recover or remove the working files of captures whose process is gone; what was done, a
    line each. Only regular files of the lab's own names, never through a link."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    said = []
    for entry in sorted(entries, key=lambda entry: entry.name):
        name = entry.name
        if not (name.startswith(".") and name.endswith(WORKING_SUFFIXES) and dead_owner(name)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        path = Path(folder) / name
        mark = MARK.search(name)
        try:
            if name.endswith(PART_SUFFIX) and mark is not None:
                said.append(recover(path, Path(folder) / f"{name[1:mark.start()]}.recovered.pcap"))
            else:
                remove_if_regular(path)
        except OSError as exc:           # a full disk, a file made read-only: the next sweep tries again
            said.append(f"could not recover or remove {name}, left by a killed capture: {exc.strerror}")
    return [line for line in said if line]


def recover(part: Path, final: Path) -> str:
    """Copy a raw pcap's whole records into a file of ours named ``final`` (or final-2 ...), then
    remove the raw file. A copy, not a cut in place: the killed capture's docker client may still
    be writing to it for a moment."""
    try:
        source = os.open(part, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            return ""
        end, packets = whole_records(source)
        if packets:
            fd, temporary = new_private_file(final.parent, f".{final.stem}.", ".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    copied = 0
                    while copied < end:
                        chunk = os.pread(source, min(READ_SIZE, end - copied), copied)
                        if not chunk:
                            break
                        out.write(chunk)
                        copied += len(chunk)
                    give_to_invoking_user(out.fileno())
            except OSError:
                remove_if_regular(temporary)      # the raw file stays, for the next sweep
                raise
    finally:
        os.close(source)
    remove_if_regular(part)
    if not packets:
        return f"removed {part.name}, the empty raw file of a capture whose invoke was killed"
    placed = place(temporary, final)
    return f"recovered {packets} packets of a capture whose invoke was killed: {placed.name} (unannotated)"


def whole_records(fd: int) -> tuple[int, int]:
    """(the end of the last whole record, how many records) of a pcap file; (0, 0) if not one."""
    header = os.pread(fd, PCAP_HEADER, 0)
    if len(header) < PCAP_HEADER:
        return 0, 0
    order = next((mark for mark in "<>" if struct.unpack(f"{mark}I", header[:4])[0]
                  in (PCAP_MICROSECOND_MAGIC, PCAP_NANOSECOND_MAGIC)), None)
    if order is None:
        return 0, 0
    record = struct.Struct(f"{order}IIII")
    size = os.fstat(fd).st_size
    offset, count = PCAP_HEADER, 0
    while offset + RECORD_HEADER <= size:
        _, _, captured, _ = record.unpack(os.pread(fd, RECORD_HEADER, offset))
        if offset + RECORD_HEADER + captured > size:
            break
        offset += RECORD_HEADER + captured
        count += 1
    return offset, count
