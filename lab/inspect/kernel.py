"""The kernel's view beside a capture: its samples of each socket, matched to the capture's connections.

`invoke capture --kernel` (and every scenario) keeps ``NAME.kernel.jsonl`` beside
``NAME.pcapng``: JSON lines written by lab.inside.sampler in the server's and the
client's namespaces, stamped on the capture's clock. This module reads that file
as hostile input (it is a file anyone may hand us, like a capture: no link
followed, its size bounded, each line checked) and gives each TCP connection of
the capture its series: what the sender's kernel believed while the packets flew.

The series keeps a sample only where something but the time changed, so a
transfer that sat still for a second costs one row, not a thousand.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any, Iterable, Sequence

from lab.inspect.decode import ACK, endpoint_text
from lab.inspect.reader import CaptureFileError
from lab.inspect.tcp import Connection, Segment

KERNEL_SUFFIX = ".kernel.jsonl"
MAX_FILE_BYTES = 256 << 20
MAX_LINE_BYTES = 4096
HOSTS = ("server", "client")
NUMBERS = ("cwnd", "ssthresh", "srtt_us", "rttvar_us", "rto_us", "unacked", "lost", "retrans", "total_retrans",
           "bytes_acked", "delivery_rate", "pacing_rate", "snd_mss", "probes", "backoff", "ato_us", "rcv_ssthresh",
           "rcv_space", "snd_wscale", "rcv_wscale", "bbr_bw", "bbr_min_rtt_us", "pacing_gain", "cwnd_gain")
TEXTS = ("state", "ca_state", "cc")
EARLY_S = 2.0     # a socket may be sampled before its first packet (SYN_SENT), by this much at most


@dataclasses.dataclass(frozen=True)
class KernelSample:
    """One socket at one instant, as its kernel saw it (fields of lab.inside.sampler)."""

    time_ns: int
    host: str            # "server" or "client": whose namespace
    local: str
    remote: str
    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def cwnd_bytes(self) -> int | None:
        """The congestion window in bytes: the kernel counts it in segments of snd_mss bytes."""
        cwnd, mss = self.values.get("cwnd"), self.values.get("snd_mss")
        return cwnd * mss if cwnd is not None and mss else None

    @property
    def ssthresh_bytes(self) -> int | None:
        ssthresh, mss = self.values.get("ssthresh"), self.values.get("snd_mss")
        return ssthresh * mss if ssthresh is not None and mss else None

    @property
    def unacked_bytes(self) -> int | None:
        unacked, mss = self.values.get("unacked"), self.values.get("snd_mss")
        return unacked * mss if unacked is not None and mss else None


def kernel_file_of(capture: str | os.PathLike[str]) -> Path | None:
    """``NAME.kernel.jsonl`` beside ``NAME.pcapng`` (or .pcap), if it is there."""
    path = Path(capture)
    candidate = path.with_name(path.name.removesuffix(path.suffix) + KERNEL_SUFFIX)
    return candidate if candidate.exists() else None


def parse_sample(line: bytes) -> KernelSample | None:
    """A line of the kernel file, or None if it is not one the sampler writes."""
    import json

    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    t, host, local, remote = raw.get("t"), raw.get("host"), raw.get("local"), raw.get("remote")
    if not (isinstance(t, int) and t >= 0 and host in HOSTS and isinstance(local, str) and isinstance(remote, str)
            and len(local) <= 64 and len(remote) <= 64):
        return None
    values: dict[str, Any] = {}
    for name in NUMBERS:
        value = raw.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64):
            values[name] = value
    for name in TEXTS:
        value = raw.get(name)
        if isinstance(value, str) and len(value) <= 16:
            values[name] = value
    return KernelSample(t, host, local, remote, values)


def read_kernel_file(path: str | os.PathLike[str]) -> list[KernelSample]:
    """Every well-formed sample of a kernel file, in time order; a one-line error if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise CaptureFileError(f"cannot read the kernel samples {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CaptureFileError(f"{path} is not a regular file: a kernel file is one the lab wrote")
        if info.st_size > MAX_FILE_BYTES:
            raise CaptureFileError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: not a kernel file of the lab")
        samples = [sample for line in source if len(line) <= MAX_LINE_BYTES
                   for sample in [parse_sample(line)] if sample is not None]
    samples.sort(key=lambda sample: sample.time_ns)
    return samples


def connection_samples(samples: Iterable[KernelSample], connection: Connection,
                       early_s: float | None = EARLY_S) -> dict[str, list[KernelSample]]:
    """The samples of one connection's two sockets: {"server": [...], "client": [...]}.

    A socket is the connection's when its endpoints are the connection's (the
    server's local address is the server's, its remote the client's) and it was
    sampled from a little before the connection's first packet (``early_s``; None: at any
    time) to its last one or later (TIME_WAIT lasts a minute after).
    """
    server = endpoint_text(connection.server.address, connection.server.port)
    client = endpoint_text(connection.client.address, connection.client.port)
    wanted = {("server", server, client), ("client", client, server)}
    earliest = connection.start_ns - int(early_s * 1e9) if early_s is not None else None
    found: dict[str, list[KernelSample]] = {host: [] for host in HOSTS}
    for sample in samples:
        if (earliest is None or sample.time_ns >= earliest) and (sample.host, sample.local, sample.remote) in wanted:
            found[sample.host].append(sample)
    return found


def algorithm_of(series: Sequence[KernelSample]) -> str | None:
    """The congestion control a socket ran: its last sample's, so that one switched by a CC
    request after it opened (its first samples carry the namespace's default) says the one it used."""
    return next((sample.values["cc"] for sample in reversed(series) if sample.values.get("cc")), None)


def changes(series: list[KernelSample]) -> list[KernelSample]:
    """The samples where something but the time changed (the first one always)."""
    kept, last = [], None
    for sample in series:
        if sample.values != last:
            kept.append(sample)
            last = sample.values
    return kept


def state_spans(series: Sequence[KernelSample]) -> list[tuple[int, int, str]]:
    """(from ns, to ns, state) for each stretch of one socket's life in one TCP state."""
    spans: list[tuple[int, int, str]] = []
    for sample in series:
        state = sample.values.get("state", "?")
        if spans and spans[-1][2] == state:
            spans[-1] = (spans[-1][0], sample.time_ns, state)
        else:
            if spans:
                spans[-1] = (spans[-1][0], sample.time_ns, spans[-1][2])
            spans.append((sample.time_ns, sample.time_ns, state))
    return spans


def series_json(series: list[KernelSample], first_time_ns: int) -> list[dict[str, Any]]:
    """A socket's changes as JSON rows, time in seconds since the capture's first frame."""
    return [{"t_s": round((sample.time_ns - first_time_ns) / 1e9, 6), **sample.values} for sample in changes(series)]


def bytes_in_flight(segments: Sequence[Segment], from_client: bool) -> list[tuple[int, int]]:
    """(time ns, bytes in flight) after each frame, from the packets alone: the highest sequence
    number one side has sent, less the highest ACK it has received (Wireshark's
    tcp.analysis.bytes_in_flight, at the capture point)."""
    sent_up_to = acked = None
    points = []
    for segment in segments:
        if segment.from_client == from_client:
            end = segment.rel_seq + segment.length
            sent_up_to = end if sent_up_to is None else max(sent_up_to, end)
        elif segment.flags & ACK:
            acked = segment.rel_ack if acked is None else max(acked, segment.rel_ack)
        if sent_up_to is not None and acked is not None:
            points.append((segment.time_ns, max(sent_up_to - acked, 0)))
    return points


def unacked_agreement(series: list[KernelSample], segments: Sequence[Segment], from_client: bool,
                      slack_ns: int) -> tuple[int, list[KernelSample]]:
    """How many of a sender's ESTABLISHED samples agree with the packets, and those that do not.

    A sample agrees when its unacked segments, in bytes, lie between the least and
    the most bytes in flight the capture shows within ``slack_ns`` of it (one
    sampling interval: the kernel and the capture see the same packet a moment
    apart), a segment's worth of rounding allowed (the kernel counts segments).
    """
    import bisect

    flight = bytes_in_flight(segments, from_client)
    times = [t for t, _ in flight]
    agreeing, disagreeing = 0, []
    for sample in series:
        unacked, mss = sample.values.get("unacked"), sample.values.get("snd_mss")
        if sample.values.get("state") != "ESTABLISHED" or unacked is None or not mss or not flight:
            continue
        low = bisect.bisect_left(times, sample.time_ns - slack_ns)
        high = bisect.bisect_right(times, sample.time_ns + slack_ns)
        window = [value for _, value in flight[max(low - 1, 0):max(high, 1)]]
        if min(window) - mss <= unacked * mss and (unacked - 1) * mss <= max(window):
            agreeing += 1
        else:
            disagreeing.append(sample)
    return agreeing, disagreeing
