"""Annotating a capture: packet comments that tell a connection's story, in a pcapng file.

A learner opening the capture in Wireshark (or a notebook) finds, on the packets
that matter, a sentence saying what happens there (lab.inspect.story decides
which). One streaming pass: memory does not grow with the capture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import BinaryIO, cast

from lab.host.capture.pcapng import PcapNgWriter
from lab.inspect.reader import read_records
from lab.inspect.story import Storyteller
from lab.inspect.tcp import Tracker


@dataclasses.dataclass(frozen=True)
class Annotated:
    packets: int
    comments: int


def annotate(raw: str | os.PathLike[str], out: str | os.PathLike[str] | BinaryIO, ifname: str = "eth0",
             file_comment: str | None = None) -> Annotated:
    """Write ``raw`` (pcap or pcapng) to ``out`` (a path, or a file open for writing) as pcapng
    with story comments, and ``file_comment`` as the file's own comment.

    A raw file cut short (a capture stopped mid-write) is annotated up to the cut.
    """
    from lab.inspect.reader import CaptureFileError

    tracker = Tracker(keep=False, emit=True)
    teller = Storyteller(tracker.connections)
    packets = comments = 0
    opened = Path(out).open("wb") if isinstance(out, (str, os.PathLike)) else None
    with Path(raw).open("rb") as source, opened or contextlib.nullcontext(cast(BinaryIO, out)) as target:
        writer = None
        try:
            for frame, record in enumerate(read_records(source), 1):
                if writer is None:
                    writer = PcapNgWriter(target, record.linktype, ifname, comment=file_comment)
                tracker.frames = frame
                segment = tracker.analyse(frame, record)
                told = teller.comments(segment) if segment is not None else ()
                writer.packet(record.time_ns, record.data, record.wire_length, told)
                packets += 1
                comments += bool(told)
        except CaptureFileError:
            if packets == 0 and Path(raw).stat().st_size > 24:
                raise
        if writer is None:
            PcapNgWriter(target, 1, ifname, comment=file_comment)
    return Annotated(packets, comments)

