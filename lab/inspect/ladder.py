"""Ladder (flow) diagrams of one connection: the client on the left, the server on the right.

Each frame is an arrow from its sender to its receiver, labelled with what a
learner checks against the textbook: flags, relative seq and ack, payload length,
the handshake's options, the first bytes of the payload, and Wireshark's analysis
words ("TCP Retransmission", "TCP Dup ACK #2", ...) on flagged frames.

Two renderings of the same rows: :func:`ladder_text` for terminals (``invoke
inspect``) and :func:`ladder_figure` for notebooks. Rows are frames, not times:
a capture's interesting moments are microseconds apart and its pauses seconds
long, so a time axis would crush the handshake into one line. Each row shows its
time instead.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Mapping, Sequence, cast

from lab.inspect.decode import ACK, SYN, endpoint_text, tcp_flags_text
from lab.inspect.tcp import Connection, Segment, wireshark_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PREVIEW = 18


@dataclasses.dataclass(frozen=True)
class Rung:
    """One arrow of the ladder."""

    frame: int
    time_ms: float          # since the connection's first frame
    to_server: bool
    label: str
    analysis: tuple[str, ...]


def options_text(segment: Segment) -> str:
    """A SYN's options as Wireshark abbreviates them: MSS=1460 WS=128 SACK_PERM TSval."""
    options = segment.options
    if options is None:
        return ""
    words = []
    if options.mss is not None:
        words.append(f"MSS={options.mss}")
    if options.window_scale is not None:
        words.append(f"WS={1 << options.window_scale}")
    if options.sack_permitted:
        words.append("SACK_PERM")
    if options.timestamps:
        words.append("TS")
    if options.cut:
        words.append("(options cut by the capture's snap length)")
    return " ".join(words)


def payload_preview(payload: bytes, limit: int = PREVIEW) -> str:
    """The first bytes of a payload as a Python literal would show them: 'ECHO hi\\n'."""
    shown = repr(payload[:limit])[2:-1]
    return f"'{shown}{'...' if len(payload) > limit else ''}'"


def rung(segment: Segment, start_ns: int) -> Rung:
    parts = [tcp_flags_text(segment.flags), f"seq={segment.rel_seq}"]
    if segment.flags & ACK:
        parts.append(f"ack={segment.rel_ack}")
    parts.append(f"win={segment.window}")
    if segment.length:
        parts.append(f"len={segment.length}")
    if segment.flags & SYN:
        parts.append(options_text(segment))
    if segment.payload:
        parts.append(payload_preview(segment.payload))
    return Rung(segment.frame, (segment.time_ns - start_ns) / 1e6, segment.from_client,
                " ".join(part for part in parts if part),
                tuple(wireshark_labels(segment.analysis, segment.dupack_num)))


def rungs(segments: Sequence[Segment]) -> list[Rung]:
    if not segments:
        return []
    start = segments[0].time_ns
    return [rung(segment, start) for segment in segments]


def ladder_text(conn: Connection, segments: Sequence[Segment], width: int = 100,
                notes: Mapping[int, Sequence[str]] | None = None) -> str:
    """The ladder as lines of text, ``width`` characters wide; ``notes`` (frame -> sentences, the
    story lab.inspect.story tells) are printed under their frame's arrow, wrapped to the width."""
    import textwrap

    client = f"client {endpoint_text(conn.client.address, conn.client.port)}"
    server = f"server {endpoint_text(conn.server.address, conn.server.port)}"
    gutter = 18                                   # "frame    time ms  "
    span = max(40, width - gutter - 2)            # between the two | rails
    lines = [f"{'frame':>6} {'time ms':>9}  {client:<{span - len(server) + 1}}{server}"]
    for item in rungs(segments):
        text = f" {item.label} "
        if item.analysis:
            text += f"[{', '.join(item.analysis)}] "
        if len(text) > span - 6:
            text = text[:span - 9] + "... "
        dashes = span - 2 - len(text)
        left, right = dashes // 2, dashes - dashes // 2
        if item.to_server:
            arrow = "|" + "-" * left + text + "-" * (right - 1) + ">|"
        else:
            arrow = "|<" + "-" * (left - 1) + text + "-" * right + "|"
        lines.append(f"{item.frame:>6} {item.time_ms:>9.3f}  {arrow}")
        for note in (notes or {}).get(item.frame, ()):
            lines += textwrap.wrap(note, width - 2, initial_indent=" " * (gutter - 4) + "-> ",
                                   subsequent_indent=" " * (gutter - 1))
    return "\n".join(lines)


MAX_FIGURE_RUNGS = 60        # a ladder taller than this is drawn as a window (2,790 rungs took two minutes)


def ladder_window(segments: Sequence[Segment], limit: int = MAX_FIGURE_RUNGS) -> tuple[list[Segment], str]:
    """At most ``limit`` segments, and what they are: all of them, or a window that opens a few
    frames before the first one Wireshark flags (a retransmission, a duplicate ACK, a zero
    window), else the first ``limit``: where the lesson is, not the middle of a long download."""
    if len(segments) <= limit:
        return list(segments), ""
    flagged = next((i for i, segment in enumerate(segments) if segment.analysis), None)
    first = 0 if flagged is None else max(0, min(flagged - limit // 4, len(segments) - limit))
    shown = list(segments[first:first + limit])
    around = "around the first frame Wireshark flags" if flagged is not None else "the first ones"
    return shown, f"frames {shown[0].frame}-{shown[-1].frame} of {len(segments)} in this stream, {around}"


def ladder_figure(conn: Connection, segments: Sequence[Segment], ax: Axes | None = None,
                  title: str | None = None) -> Figure:
    """The ladder as a matplotlib figure: one arrow per frame, flagged frames in red; a stream
    longer than MAX_FIGURE_RUNGS is drawn as a window (ladder_window), said under the title."""
    import matplotlib.pyplot as plt

    segments, window = ladder_window(segments)
    if window:
        title = f"{title or f'TCP stream {conn.stream}'}\n({window})"
    items = rungs(segments)
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 1.4 + 0.5 * max(len(items), 1)))
    else:
        fig = cast("Figure", ax.figure)          # an Axes of a figure, not of a subfigure
    ax.set_xlim(-0.3, 1.05)
    ax.set_ylim(len(items) + 0.2, -1.2)
    for x in (0, 1):
        ax.plot([x, x], [-0.4, len(items)], color="0.35", linewidth=2)
    ax.text(0, -0.6, f"client\n{endpoint_text(conn.client.address, conn.client.port)}",
            ha="center", va="bottom", fontsize=9, fontweight="bold")
    ax.text(1, -0.6, f"server\n{endpoint_text(conn.server.address, conn.server.port)}",
            ha="center", va="bottom", fontsize=9, fontweight="bold")
    for row, item in enumerate(items):
        start, end = (0, 1) if item.to_server else (1, 0)
        color = "tab:red" if item.analysis else ("tab:blue" if item.to_server else "tab:green")
        ax.annotate("", xy=(end, row + 0.55), xytext=(start, row + 0.05),
                    arrowprops=dict(arrowstyle="-|>", color=color, linewidth=1.4))
        label = item.label if not item.analysis else f"{item.label}  [{', '.join(item.analysis)}]"
        # The label sits above the arrow's middle (y grows downwards here), on white, so they never cross.
        ax.text(0.5, row + 0.16, label, ha="center", va="bottom", fontsize=8.5, color=color,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.8, alpha=0.9))
        ax.text(-0.08, row + 0.3, f"#{item.frame}  {item.time_ms:.3f} ms", ha="right", va="center",
                fontsize=8.5, color="0.3")
    ax.axis("off")
    ax.set_title(title or f"TCP stream {conn.stream}: frames top to bottom", fontsize=10)
    fig.tight_layout()
    return fig
