"""The live view of a capture: one line per packet while it is being captured.

Like a small tcpdump that speaks the lesson: time, who sends to whom (client ->
server or back), the TCP flags, relative seq and ack, the length, the first bytes
of the payload, and Wireshark's words for a flagged frame ("TCP Retransmission").

It reads the capture file as the engine writes it, on the host, in a thread of its
own: it can fall behind, never slow the capture. Lines are rate-limited (a bulk
transfer makes 100,000 packets a second, a terminal shows a few dozen); how many
were not shown is said once a second and at the end; a frame Wireshark flags
(a retransmission, a duplicate ACK, a zero window) and a frame with a story are
always shown.
"""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import BinaryIO, cast

from rich.markup import escape

from lab.inspect.decode import ACK, address_text, ip_packet, tcp_flags_text, udp_datagram
from lab.inspect.ladder import payload_preview
from lab.inspect.reader import CaptureFileError, read_records
from lab.inspect.story import Storyteller
from lab.inspect.tcp import Segment, Tracker, wireshark_labels

LINES_PER_SECOND = 25
BURST = 60
POLL_S = 0.05


class GrowingFile:
    """A file another process is still writing: reads wait for more until told it is done."""

    def __init__(self, path: Path, done: threading.Event) -> None:
        self.path, self.done = path, done
        self.handle: BinaryIO | None = None

    def read(self, size: int) -> bytes:
        while True:
            if self.handle is None and self.path.exists():
                self.handle = self.path.open("rb")
            data = self.handle.read(size) if self.handle else b""
            if data:
                return data
            if self.done.is_set():
                # One last look: the writer may have added bytes before it finished.
                return self.handle.read(size) if self.handle else b""
            time.sleep(POLL_S)

    def close(self) -> None:
        if self.handle:
            self.handle.close()


class RateLimit:
    """A token bucket: ``rate`` lines a second, ``burst`` at once."""

    def __init__(self, rate: float = LINES_PER_SECOND, burst: int = BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def tcp_line(seg: Segment, preview: int = 24, labels_inline: bool = True) -> str:
    """The words of one TCP packet's line (without time and direction): the payload's preview in
    ``preview`` columns at most (as shown, escapes and quotes counted), so that the line fits the
    terminal; Wireshark's labels at its end, unless ``labels_inline`` is False (the caller puts them
    on a line of their own)."""
    parts = [f"{tcp_flags_text(seg.flags):<7}", f"seq={seg.rel_seq:<6}"]
    parts.append(f"ack={seg.rel_ack:<6}" if seg.flags & ACK else " " * 10)
    parts.append(f"len={seg.length:<4}")
    shown = fitted_preview(seg.payload, preview) if seg.payload else ""
    if shown:
        parts.append(escape(shown))
    if labels_inline and (text := labels_text(seg)):
        parts.append(f"[bold red]{text}[/]")
    return " ".join(parts)


def labels_text(seg: Segment) -> str:
    labels = wireshark_labels(seg.analysis, seg.dupack_num)
    return "[" + ", ".join(labels) + "]" if labels else ""


def fitted_preview(payload: bytes, columns: int) -> str:
    """The longest preview of ``payload`` that takes at most ``columns`` columns as shown
    (``'YZ[\\]^_\n...'`` takes more than its eight bytes); '' if not even a few bytes fit."""
    for size in range(min(len(payload), columns), 2, -1):
        shown = payload_preview(payload, size)
        if len(shown) <= columns:
            return shown
    return ""


def other_line(linktype: int, data: bytes) -> str:
    """A short summary of a frame that is not TCP."""
    udp = udp_datagram(linktype, data)
    if udp is not None:
        return (f"UDP {address_text(udp.src)}:{udp.sport} -> {address_text(udp.dst)}:{udp.dport} "
                f"len={len(udp.payload)} {payload_preview(udp.payload, 24)}")
    ip = ip_packet(linktype, data)
    if ip is None:
        kind = {b"\x08\x06": "ARP"}.get(data[12:14], f"ethertype 0x{data[12:14].hex()}")
        return f"{kind} (no IP)"
    names = {1: "ICMP", 58: "ICMPv6", 2: "IGMP"}
    line = f"{names.get(ip.proto, f'IP protocol {ip.proto}')} {address_text(ip.src)} -> {address_text(ip.dst)}"
    if ip.proto == 58 and address_text(ip.dst).startswith("ff02:"):
        line += "  (the host's side of Docker's bridge announcing itself; IPv6 is off in the lab's containers)"
    return line


class LiveView:
    """Prints the lines of a capture file as it grows; run() in a thread, finish() to stop."""

    def __init__(self, path: Path, console, rate: RateLimit | None = None) -> None:
        self.path, self.console = path, console
        self.rate = rate or RateLimit()
        self.done = threading.Event()
        self.shown = self.hidden = 0
        self._hidden_since_note = 0
        self._last_note = time.monotonic()
        self.thread = threading.Thread(target=self.run, name="live-view", daemon=True)

    def start(self) -> "LiveView":
        self.thread.start()
        return self

    def finish(self, timeout: float = 5.0) -> None:
        """Stop once the file's last packet is read (or after ``timeout``)."""
        self.done.set()
        self.thread.join(timeout)

    def run(self) -> None:
        source = GrowingFile(self.path, self.done)
        tracker = Tracker(keep=False, emit=True)
        teller = Storyteller(tracker.connections)
        first = None
        try:
            for frame, record in enumerate(read_records(cast(BinaryIO, source)), 1):   # it reads as a file does
                first = record.time_ns if first is None else first
                segment = tracker.analyse(frame, record)
                story = teller.comments(segment) if segment is not None else ()
                # The frames the lesson is about are shown whatever is elided around them: a
                # retransmission, a duplicate ACK, a zero window, a packet with a story.
                flagged = segment is not None and bool(wireshark_labels(segment.analysis, segment.dupack_num))
                if flagged or story:
                    self._note_hidden(force=True)
                elif not self.rate.allow():
                    self.hidden += 1
                    self._hidden_since_note += 1
                    self._note_hidden()
                    continue
                self.shown += 1
                self.console.print(self.line(segment, record, (record.time_ns - first) / 1e9), highlight=False)
                for sentence in story:       # what the pcapng's comment on this packet will say
                    for line in textwrap.wrap(sentence, max(self.console.width - 16, 30),
                                              initial_indent="-> ", subsequent_indent="   "):
                        self.console.print(f"[dim italic]{' ' * 10}{escape(line)}[/]", highlight=False)
        except (CaptureFileError, OSError, ValueError):
            pass   # a capture cut short: the recorder reports it; the view just stops
        finally:
            source.close()
            self._note_hidden(force=True)

    def line(self, segment: Segment | None, record, seconds: float) -> str:
        if segment is None:
            return f"[dim]{seconds:9.6f} {escape(other_line(record.linktype, record.data))}[/]"
        arrow = "client [cyan]->[/] server" if segment.from_client else "client [green]<-[/] server"
        # 66 columns before the payload's preview; the preview and Wireshark's labels share what the
        # terminal has left, and labels that would not fit go on a line of their own under it.
        room = self.console.width - 67
        labels = labels_text(segment)
        inline = len(labels) + (8 if segment.payload else 0) <= room
        preview = room - (len(labels) + 1 if labels and inline else 0)
        line = f"{seconds:9.6f} {arrow} {tcp_line(segment, min(40, preview), labels_inline=inline)}"
        return line if inline or not labels else f"{line}\n{' ' * 10}[bold red]{escape(labels)}[/]"

    def _note_hidden(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._hidden_since_note and (force or now - self._last_note >= 1.0):
            self.console.print(f"[dim]... {self._hidden_since_note} lines not shown "
                               f"(the live view shows {LINES_PER_SECOND} a second; the file has them all)[/]")
            self._hidden_since_note = 0
            self._last_note = now

