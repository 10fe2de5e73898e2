"""Pictures of a transfer over time: the Stevens time-sequence graph, throughput, RTT.

All three look at one direction of one connection, the *sender* of the data (by
default the side that sent more payload: the server in a BULK download). Time is
seconds since the connection's first frame.

* Time-sequence (Stevens, as in TCP/IP Illustrated and Wireshark's "Stevens"
  graph): each data segment is a dot at (time, relative seq); the ACKs coming back
  and the right edge of the receiver's window are drawn as lines. Slow start bends
  the dots upwards, a loss shows as a gap and a late dot under the line.
* Throughput: new payload bytes per interval, in Mbit/s (retransmitted bytes are
  not new, so they do not count).
* RTT: Wireshark's ``ack_rtt`` samples (lab.inspect.rtt) with the smoothed
  estimate of RFC 6298 (alpha 1/8), which is what textbooks call EstimatedRTT.

Where the capture has the kernel's samples beside it (lab.inspect.kernel), the
same pictures carry the sender's own view: its congestion window and ssthresh
under the time-sequence graph, beside the bytes in flight the packets show; its
smoothed RTT and retransmission timeout over the RTT samples; and each socket's
TCP states as a timeline, to read beside the ladder.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, Sequence, cast

from lab.inspect.decode import ACK
from lab.inspect.rtt import ALPHA, RttSample, estimated_rtts, rtt_samples
from lab.inspect.tcp import RETRANSMITTED, Segment

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lab.inspect.kernel import KernelSample
    from lab.inspect.overlay import Encapsulated


@dataclasses.dataclass(frozen=True)
class SeqPoint:
    """A data segment in the time-sequence graph."""

    time_s: float
    rel_seq: int
    length: int
    retransmitted: bool


def data_sender(segments: Sequence[Segment]) -> bool:
    """True if the client sent more payload than the server (then it is the sender)."""
    sent = {True: 0, False: 0}
    for segment in segments:
        sent[segment.from_client] += segment.length
    return sent[True] > sent[False]


def _start(segments: Sequence[Segment]) -> int:
    return segments[0].time_ns if segments else 0


def sequence_points(segments: Sequence[Segment], from_client: bool | None = None) -> list[SeqPoint]:
    """The data segments of one direction, as points of the time-sequence graph."""
    if from_client is None:
        from_client = data_sender(segments)
    start = _start(segments)
    return [SeqPoint((s.time_ns - start) / 1e9, s.rel_seq, s.length, bool(s.analysis & RETRANSMITTED))
            for s in segments if s.from_client == from_client and s.length]


def ack_line(segments: Sequence[Segment], from_client: bool | None = None) -> list[tuple[float, int, int]]:
    """(time, relative ACK, right window edge) of every ACK coming back to the sender."""
    if from_client is None:
        from_client = data_sender(segments)
    start = _start(segments)
    return [((s.time_ns - start) / 1e9, s.rel_ack, s.rel_ack + s.window)
            for s in segments if s.from_client != from_client and s.flags & ACK]


def default_interval(segments: Sequence[Segment], bins: int = 40) -> float:
    """An interval that cuts the connection's duration into about ``bins`` bars (at least 100 us)."""
    duration = (segments[-1].time_ns - segments[0].time_ns) / 1e9 if segments else 0
    return max(duration / bins, 1e-4)


def throughput(segments: Sequence[Segment], interval_s: float | None = None,
               from_client: bool | None = None) -> list[tuple[float, float]]:
    """(interval start, Mbit/s of new payload) for each interval of the transfer."""
    if from_client is None:
        from_client = data_sender(segments)
    interval_s = interval_s or default_interval(segments)
    start = _start(segments)
    bins: dict[int, int] = {}
    for s in segments:
        if s.from_client == from_client and s.length and not s.analysis & RETRANSMITTED:
            index = int((s.time_ns - start) / 1e9 / interval_s)
            bins[index] = bins.get(index, 0) + s.length
    if not bins:
        return []
    return [(i * interval_s, bins.get(i, 0) * 8 / interval_s / 1e6) for i in range(max(bins) + 1)]


def estimated_rtt(samples: Sequence[RttSample], alpha: float = ALPHA) -> list[float]:
    """EstimatedRTT after each sample (lab.inspect.rtt.estimated_rtts)."""
    return estimated_rtts((sample.rtt_ms for sample in samples), alpha)


def _finish(fig: Figure, ax: Axes, xlabel: str, ylabel: str, title: str,
            legend: Literal["upper left", "upper right", "lower right"] | None = "upper left") -> Figure:
    """Label a time plot the way every figure here is labelled: axes, title, legend, a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(loc=legend, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _axes(ax: Axes | None, size: tuple[float, float] = (10, 4.5)) -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    if ax is None:
        fig, made = plt.subplots(figsize=size)
        return fig, made
    return cast("Figure", ax.figure), ax


def time_sequence_figure(segments: Sequence[Segment], from_client: bool | None = None, ax: Axes | None = None,
                         title: str = "Time-sequence graph (Stevens)") -> Figure:
    """Data segments as dots, with the ACK line and the receiver's window edge."""
    fig, ax = _axes(ax)
    points = sequence_points(segments, from_client)
    acks = ack_line(segments, from_client)
    first = [p for p in points if not p.retransmitted]
    again = [p for p in points if p.retransmitted]
    ax.scatter([p.time_s for p in first], [p.rel_seq for p in first], s=6, color="tab:blue",
               label="data segment (seq)")
    if again:
        ax.scatter([p.time_s for p in again], [p.rel_seq for p in again], s=24, color="tab:red",
                   marker="x", label="retransmission / out-of-order")
    if acks:
        ax.step([a[0] for a in acks], [a[1] for a in acks], where="post", color="tab:green",
                linewidth=1, label="ACK from receiver")
        ax.step([a[0] for a in acks], [a[2] for a in acks], where="post", color="tab:orange",
                linewidth=1, linestyle="--", label="ACK + receive window")
    return _finish(fig, ax, "time since the first frame (s)", "relative sequence number (bytes)", title)


def throughput_figure(segments: Sequence[Segment], interval_s: float | None = None,
                      from_client: bool | None = None, ax: Axes | None = None) -> Figure:
    """Throughput of new payload per interval."""
    fig, ax = _axes(ax, (10, 3.5))
    interval_s = interval_s or default_interval(segments)
    rows = throughput(segments, interval_s, from_client)
    ax.bar([r[0] for r in rows], [r[1] for r in rows], width=interval_s, align="edge", color="tab:blue")
    return _finish(fig, ax, "time since the first frame (s)", "Mbit/s",
                   f"Throughput of new data per {interval_s * 1000:.3g} ms", legend=None)


GAP_FACTOR = 5      # a line breaks where two points are this many median spacings apart (and 50 ms or more)


def with_gaps(times: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The points with a NaN between two that lie far apart, so a line is not drawn across a
    silence (a timeout, a stall) as if the values had moved smoothly through it."""
    import statistics

    if len(times) < 3:
        return list(times), list(values)
    spacing = statistics.median(b - a for a, b in zip(times, times[1:]))
    gap = max(GAP_FACTOR * spacing, 0.05)
    xs, ys = [times[0]], [values[0]]
    for (before, after), value in zip(zip(times, times[1:]), values[1:]):
        if after - before > gap:
            xs.append(float("nan"))
            ys.append(float("nan"))
        xs.append(after)
        ys.append(value)
    return xs, ys


def rtt_points(segments: Sequence[Segment], from_client: bool) -> tuple[list[float], list[float]]:
    """(time the ACK arrived, s since the first frame; RTT ms) of each of one side's RTT samples.

    A sample is taken when its ACK arrives: that is when the sender learns it and its
    kernel updates srtt, so this is the time axis the kernel's samples share.
    """
    start = _start(segments)
    samples = [s for s in rtt_samples(segments) if s.from_client == from_client]
    return [(s.acked_ns - start) / 1e9 for s in samples], [s.rtt_ms for s in samples]


def rtt_figure(segments: Sequence[Segment], from_client: bool | None = None, ax: Axes | None = None,
               kernel: Sequence[KernelSample] | None = None) -> Figure:
    """RTT samples of the sender's segments over time, with EstimatedRTT (and the kernel's
    srtt and RTO when ``kernel``, the sender's samples, is given), all on one time axis:
    when the ACK arrived, on the capture's clock."""
    if from_client is None:
        from_client = data_sender(segments)
    fig, ax = _axes(ax, (10, 3.5))
    start = _start(segments)
    times, rtts = rtt_points(segments, from_client)
    ax.scatter(times, rtts, s=8, color="tab:purple", label="SampleRTT")
    if rtts:
        ax.plot(*with_gaps(times, estimated_rtts(rtts)), color="black", linewidth=1,
                label="EstimatedRTT (alpha 1/8)")
    if kernel:
        timed = [((k.time_ns - start) / 1e9, k.values) for k in kernel if k.values.get("srtt_us")]
        ax.step([t for t, _ in timed], [v["srtt_us"] / 1000 for _, v in timed], where="post", color="tab:green",
                label="kernel srtt")
        ax.step([t for t, _ in timed], [v["rto_us"] / 1000 for _, v in timed], where="post", color="tab:red",
                linestyle="--", label="kernel RTO")
    return _finish(fig, ax, "time the ACK arrived (s since the first frame; the kernel's samples on the same clock)",
                   "RTT (ms)", "Round-trip time of each acknowledged segment")


def kernel_window_figure(segments: Sequence[Segment], kernel: Sequence[KernelSample],
                         from_client: bool | None = None) -> Figure:
    """The Stevens graph above; below it, on the same time axis, the sender's cwnd and
    ssthresh (the kernel's, in bytes) beside the bytes in flight computed from the packets."""
    import matplotlib.pyplot as plt

    from lab.inspect.kernel import bytes_in_flight

    if from_client is None:
        from_client = data_sender(segments)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True, height_ratios=[3, 2])
    time_sequence_figure(segments, from_client, ax=top)
    start = _start(segments)
    flight = bytes_in_flight(segments, from_client)
    bottom.step([(t - start) / 1e9 for t, _ in flight], [b / 1000 for _, b in flight], where="post",
                color="tab:blue", linewidth=1, label="bytes in flight (from the packets)")
    for attribute, color, style, label in (("cwnd_bytes", "tab:orange", "-", "kernel cwnd"),
                                            ("ssthresh_bytes", "tab:red", "--", "kernel ssthresh"),
                                            ("unacked_bytes", "tab:gray", ":", "kernel unacked")):
        points = [((k.time_ns - start) / 1e9, getattr(k, attribute)) for k in kernel
                  if k.values.get("state") == "ESTABLISHED" and getattr(k, attribute) is not None]
        if points:
            bottom.step([t for t, _ in points], [v / 1000 for _, v in points], where="post", color=color,
                        linestyle=style, linewidth=1.4, label=label)
    bottom.set_xlabel("time since the first frame (s)")
    bottom.set_ylabel("kB")
    bottom.set_title("The sender's congestion window (its kernel) and what the packets show in flight")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.3)
    top.set_xlabel("")
    fig.tight_layout()
    return fig


STATE_COLORS = {"SYN_SENT": "tab:olive", "SYN_RECV": "tab:cyan", "ESTABLISHED": "tab:green",
                "FIN_WAIT1": "tab:orange", "FIN_WAIT2": "gold", "CLOSE_WAIT": "tab:purple",
                "LAST_ACK": "tab:pink", "CLOSING": "tab:red", "TIME_WAIT": "tab:gray"}


def kernel_states_figure(series_by_host: dict[str, Sequence[KernelSample]], start_ns: int,
                         until_s: float | None = None, ax: Axes | None = None) -> Figure:
    """Each socket's TCP states as a timeline (one row per host), the kernel's own names,
    to read beside the ladder: which side waits in which state, and for how long."""
    from lab.inspect.kernel import state_spans

    fig, ax = _axes(ax, (10, 2.8))
    hosts = [host for host, series in series_by_host.items() if series]
    # The file keeps changes only: a socket's last state lasts until the last sample of either host.
    last_ns = max(series[-1].time_ns for series in series_by_host.values() if series) if hosts else start_ns
    whole_s = max((last_ns - start_ns) / 1e9, 1e-3) if until_s is None else until_s
    seen: dict[str, str] = {}
    for row, host in enumerate(hosts):
        spans = state_spans(series_by_host[host])
        spans[-1] = (spans[-1][0], last_ns, spans[-1][2])
        for begin, end, state in spans:
            left, right = (begin - start_ns) / 1e9, (end - start_ns) / 1e9
            if until_s is not None:
                if left > until_s:
                    continue
                right = min(right, until_s)
            color = seen.setdefault(state, STATE_COLORS.get(state, "tab:blue"))
            ax.broken_barh([(left, max(right - left, 1e-4))], (row - 0.35, 0.7), color=color, alpha=0.8)
            if right - left > 0.08 * whole_s:        # a name only where it fits; the legend has them all
                ax.text(left, row, f" {state}", va="center", fontsize=7, clip_on=True)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=color, alpha=0.8, label=state) for state, color in seen.items()],
              fontsize=7, ncols=min(len(seen), 5), loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    ax.set_yticks(range(len(hosts)), hosts)
    ax.set_xlabel("time since the first frame (s)")
    ax.set_title("TCP states, as each host's kernel had them")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def overlay_cost_figure(carried: Sequence[Encapsulated], segments: Sequence[Segment],
                        ax: Axes | None = None) -> Figure:
    """Where the bytes on the wire between two hosts go, under an overlay: the lab's data, the
    lab's own headers (Ethernet, IP, TCP), and the overlay's (outer Ethernet, IP, UDP, VXLAN);
    for the largest data packet, for an ACK, and for the whole capture. ``carried`` are
    lab.inspect.overlay's packets, ``segments`` the inner TCP (frame N: the Nth carried)."""
    fig, ax = _axes(ax, (10, 2.8))
    data = {segment.frame: segment.length for segment in segments}
    rows = []
    for name, pick in (("largest data packet", lambda: max(data, key=data.__getitem__)),
                       ("an ACK (no data)", lambda: next(frame for frame, length in data.items() if not length))):
        try:
            frame = pick()
        except (ValueError, StopIteration):
            continue
        packet = carried[frame - 1]
        rows.append((name, data[frame], len(packet.inner) - data[frame], packet.outer_length - len(packet.inner)))
    inner = sum(len(packet.inner) for packet in carried)
    moved = sum(data.values())
    rows.append(("the whole capture", moved, inner - moved, sum(p.outer_length for p in carried) - inner))
    colors = (("TCP data", "tab:green"), ("the lab's headers", "tab:blue"), ("the overlay's headers", "tab:red"))
    for row, (_name, *parts) in enumerate(rows):
        left = 0.0
        for value, (label, color) in zip(parts, colors):
            share = 100 * value / sum(parts)
            ax.barh(row, share, left=left, color=color, label=label if row == 0 else None)
            if share >= 6:
                ax.text(left + share / 2, row, f"{share:.0f}%", ha="center", va="center", color="white", fontsize=8)
            left += share
    ax.set_yticks(range(len(rows)), [row[0] for row in rows])
    ax.invert_yaxis()
    ax.set_xlabel("share of the bytes on the wire (%)")
    ax.set_title("Where the bytes on the wire go, under the overlay")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncols=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def cwnd_series_figure(series_by_name: dict[str, Sequence[KernelSample]], start_ns: int,
                       ax: Axes | None = None) -> Figure:
    """Several senders' congestion windows (their kernels', in segments) on one time axis: flows
    that share a bottleneck, side by side."""
    fig, ax = _axes(ax, (10, 3.2))
    for name, series in series_by_name.items():
        points = [((k.time_ns - start_ns) / 1e9, k.values["cwnd"]) for k in series
                  if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]
        ax.step([t for t, _ in points], [cwnd for _, cwnd in points], where="post", linewidth=1, label=name)
    return _finish(fig, ax, "time since the first frame (s)", "cwnd (segments)",
                   "Each sender's congestion window, as its kernel had it", legend="upper right")
