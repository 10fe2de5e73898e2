"""Exercises checked against the learner's own capture: the Kurose-Ross TCP lab, and ours.

Each question has a right answer that comes from the capture being studied, never
from a key: the learner's own ISNs, ports and RTTs. In a notebook::

    ex = Exercises(path)
    answer = ...                         # the learner writes 2846131205 here
    ex.check("syn_sequence_number", answer)

prints a tick, or a cross with a hint that says where to look. Nothing prints the
right answer unless the learner asks for it with ``ex.reveal(name)``. An answer
left as ``...`` is a reminder to fill it in, not a failure, so a notebook runs top
to bottom before the learner has answered anything.

Definitions where textbooks and tools differ are stated with the question: a
segment's SampleRTT is the time from its first transmission to the first ACK that
covers it (Kurose-Ross; Karn's rule: retransmitted segments give no sample), and
throughput is the data sender's payload divided by the time from its first data
segment to the ACK of its last.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import statistics
from pathlib import Path
from typing import Any, Callable

from lab.errors import LabError
from lab.inspect import analyze, read_records, stream_segments
from lab.inspect.decode import ACK, FIN, SYN, endpoint_text, udp_datagram
from lab.inspect.lab_port import server_port
from lab.inspect.rtt import estimated_rtts
from lab.inspect.tcp import RETRANSMITTED, Connection, Segment

FIRST = 6     # "the first six segments", as in the Kurose-Ross lab


class CaptureMismatch(LabError):
    """A capture that lacks what a notebook studies: one sentence saying what to capture instead."""

    def _render_traceback_(self) -> list[str]:      # IPython shows these lines instead of a traceback
        return [f"this notebook cannot study that capture: {self}"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool | None          # None: not answered yet
    message: str


@dataclasses.dataclass(frozen=True)
class UdpMessage:
    """A UDP datagram of the lab's protocol, seen from the server's port."""

    frame: int
    time_ns: int
    to_server: bool
    client_port: int
    payload: bytes


@dataclasses.dataclass(frozen=True)
class Question:
    prompt: str
    truth: Callable[[Any], Any]     # of the Exercises (or the subclass: Dynamics, ...) that asks it
    hint: str
    kind: str = "exact"      # exact, text, number (relative tolerance), list, either (one of several numbers)
    tolerance: float = 0.0
    wrong: Callable[[Any], list[float]] | None = None    # what the nearest wrong methods give

    def tolerance_for(self, exercises: "Exercises", truth: Any) -> float:
        """The tolerance, narrowed to half the distance to the nearest wrong method's answer, so
        that a close enough answer is right and the wrong method's is not."""
        if self.wrong is None or not isinstance(truth, (int, float)) or not truth:
            return self.tolerance
        distances = [abs(value - truth) / abs(truth) for value in self.wrong(exercises) if value != truth]
        return min([self.tolerance, *(distance / 2 for distance in distances)])


def _text(value: Any) -> str:
    return str(value).strip().lower().replace(" ", "")


class Exercises:
    """The questions about one capture; the studied connection is the lab's (the port its protocol is spoken to).

    ``stream`` picks another connection; by default the first with a handshake
    (for the request/response notebooks) or, with ``bulk=True``, the one whose
    server sent the most bytes (a BULK download).
    """

    def __init__(self, path: str | Path, bulk: bool = False, stream: int | None = None,
                 port: int | None = None, capture=None) -> None:
        self.path = Path(path)
        self.options = {"bulk": bulk, "stream": stream, "port": port}     # how to make the same one again
        self.capture = capture if capture is not None else self.read_capture()   # a grader's, analysed once
        self.port = port if port is not None else self.lab_port()
        candidates = [c for c in self.capture.connections if c.server.port == self.port] or self.capture.connections
        if not candidates:
            self.conn = None          # a capture without TCP (the UDP notebook)
        elif stream is not None:
            self.conn = self.capture.connections[stream]
        elif bulk:
            self.conn = max(candidates, key=lambda c: c.server.payload_bytes)
        else:
            self.conn = next((c for c in candidates if c.handshake.syn is not None), candidates[0])

    @property
    def tcp(self) -> Connection:
        """The connection studied; a capture with none (UDP only) cannot answer a TCP question."""
        if self.conn is None:
            raise CaptureMismatch(f"{self.path.name} holds no TCP connection: this question is about one")
        return self.conn

    def read_capture(self):
        """The analysed capture the questions are asked of (a subclass reads another kind)."""
        return analyze(self.path, keep=False)

    def lab_port(self) -> int:
        """The lab's server port in this capture: where its protocol is spoken (lab.inspect.lab_port),
        whatever port the lab was configured with."""
        return server_port(self.path)

    @functools.cached_property
    def segments(self) -> list[Segment]:
        """The studied connection's segments: those its analysis kept (a grader's keeps all), else read
        again from the file for this connection alone."""
        kept = self.tcp.segments
        return kept if kept is not None else stream_segments(self.path, self.tcp.stream)

    # --- the answers, computed from the capture -------------------------------------

    def syn(self) -> Segment:
        return next(s for s in self.segments if s.flags & SYN and not s.flags & ACK)

    def syn_ack(self) -> Segment:
        return next(s for s in self.segments if s.flags & SYN and s.flags & ACK)

    def data(self, from_client: bool) -> list[Segment]:
        """First transmissions of data in one direction."""
        return [s for s in self.segments if s.from_client == from_client and s.length
                and not s.analysis & RETRANSMITTED]

    @property
    def sender_is_client(self) -> bool:
        return self.tcp.client.payload_bytes > self.tcp.server.payload_bytes

    def sample_rtts(self, from_client: bool, count: int = FIRST) -> list[float]:
        """SampleRTT (ms) of the first ``count`` data segments: to the first ACK covering each."""
        samples = []
        for sent in self.data(from_client)[:count]:
            end = sent.rel_seq + sent.length
            ack = next((s for s in self.segments if s.from_client != from_client and s.flags & ACK
                        and s.time_ns >= sent.time_ns and s.rel_ack >= end), None)
            samples.append(round((ack.time_ns - sent.time_ns) / 1e6, 3) if ack else math.nan)
        return samples

    def estimated_rtt(self, samples: list[float]) -> float:
        return round(estimated_rtts(samples)[-1], 3)

    def any_data_sent_again(self) -> bool:
        """Whether either side sent some of its data twice, whatever Wireshark calls the copy (Linux's
        RACK often repairs a loss so soon that Wireshark labels the copy out-of-order)."""
        from lab.inspect.expectations import first_sent_again

        return any(first_sent_again([s for s in self.segments if s.from_client == side]) is not None
                   for side in (True, False))

    def receiver_windows(self) -> list[int]:
        """Windows (bytes, scaled) the data receiver advertised after the handshake."""
        return [s.window for s in self.segments if s.from_client != self.sender_is_client
                and s.flags & ACK and not s.flags & SYN]

    def acked_bytes(self, count: int = FIRST) -> list[int]:
        """Bytes newly acknowledged by each of the receiver's first ACKs that acknowledge data."""
        receiver = not self.sender_is_client
        acked, last = [], None
        for s in self.segments:
            if s.from_client == receiver and s.flags & ACK and not s.flags & SYN:
                if last is not None and s.rel_ack > last:
                    acked.append(s.rel_ack - last)
                last = s.rel_ack if last is None else max(last, s.rel_ack)
        return [a for a in acked if a][:count]

    def acks_two_segments(self) -> bool:
        """True if some ACK acknowledges at least two full-sized segments at once."""
        largest = max(s.length for s in self.data(self.sender_is_client))
        return any(acked >= 2 * largest for acked in self.acked_bytes(10_000))

    def throughput_mbit(self) -> float:
        data = self.data(self.sender_is_client)
        end = max(s.rel_seq + s.length for s in data)
        last_ack = next(s for s in self.segments if s.from_client != self.sender_is_client
                        and s.flags & ACK and s.rel_ack >= end)
        seconds = (last_ack.time_ns - data[0].time_ns) / 1e9
        return round(sum(s.length for s in data) * 8 / seconds / 1e6, 3)

    def first_loss_s(self) -> float:
        lost = next(s for s in self.segments if s.analysis & RETRANSMITTED)
        return round((lost.time_ns - self.segments[0].time_ns) / 1e9, 6)

    def fins(self) -> list[Segment]:
        return [s for s in self.segments if s.flags & FIN]

    def udp(self) -> list[UdpMessage]:
        """The UDP datagrams to and from the server's port, in capture order."""
        found = []
        with self.path.open("rb") as stream:
            for frame, record in enumerate(read_records(stream), 1):
                udp = udp_datagram(record.linktype, record.data)
                if udp is not None and self.port in (udp.sport, udp.dport):
                    to_server = udp.dport == self.port
                    found.append(UdpMessage(frame, record.time_ns, to_server,
                                            udp.sport if to_server else udp.dport, udp.payload))
        return found

    def udp_unanswered(self) -> int:
        """Requests with no reply to the same client port after them."""
        pending: dict[int, int] = {}
        for d in self.udp():
            if d.to_server:
                pending[d.client_port] = pending.get(d.client_port, 0) + 1
            elif pending.get(d.client_port):
                pending[d.client_port] -= 1
        return sum(pending.values())

    # --- checking ---------------------------------------------------------------------

    @property
    def questions(self) -> dict[str, Question]:
        """The questions these exercises ask (a subclass adds its own)."""
        return QUESTIONS

    def verdict(self, name: str, answer: Any) -> Verdict:
        question = self.questions.get(name)
        if question is None:
            raise KeyError(f"no question {name!r}; the questions are: {', '.join(self.questions)}")
        if answer is ... or answer is None:
            return Verdict(None, f"{name}: replace ... with your answer, then run the cell again")
        try:
            truth = question.truth(self)
        except MISSING as missing:
            return Verdict(None, f"{name}: {lacks(missing)}")
        problem = form_problem(question, truth, answer)
        if problem:
            return Verdict(False, f"✘ {name}: {problem}")
        tolerance = question.tolerance_for(self, truth)
        if _matches(question, truth, answer, tolerance):
            return Verdict(True, f"✔ {name}: right")
        slip = unit_slip(question, truth, answer, tolerance, self.unit_sizes())
        if slip:
            return Verdict(False, f"✘ {name}: check your units: {slip}")
        return Verdict(False, f"✘ {name}: not quite. Hint: {question.hint}")

    def unit_sizes(self) -> dict[str, float]:
        """Units an answer may slip into besides a thousand: here a segment's bytes (the MSS)."""
        syn = next((s for s in self.segments if s.flags & SYN and s.options and s.options.mss), None) \
            if self.conn is not None else None
        mss = syn.options.mss if syn and syn.options else None
        return {"bytes where the question asks for segments (a segment is one MSS)": mss} if mss else {}

    def check(self, name: str, answer: Any) -> None:
        """Print whether ``answer`` is right for this capture (with a hint if not); a student's
        answer is also recorded for `invoke submit` (lab.teach.answers)."""
        from lab.teach.answers import record

        verdict = self.verdict(name, answer)
        print(verdict.message)
        if verdict.ok is not None:
            record(type(self).__name__, self.options, self.path, name, answer, verdict.ok)

    def reveal(self, name: str) -> Any:
        """The right answer for this capture: only when the learner asks."""
        return self.questions[name].truth(self)

    # --- predict, then reveal ---------------------------------------------------------

    @property
    def predictions(self) -> dict[str, Question]:
        """What the learner is asked to predict before a cell shows it (a subclass has its own)."""
        return {}

    def reveal_against(self, name: str, prediction: Any) -> None:
        """After the learner's prediction: what really happened, and how far off the guess was.
        Without a prediction it shows nothing: guessing after seeing is not predicting."""
        question = self.predictions[name]
        if prediction is ... or prediction is None:
            print(f"{name}: write your prediction in the cell above (replace ...), run it, then run this cell: "
                  "the answer shows only after you have guessed")
            return
        try:
            truth = question.truth(self)
        except MISSING as missing:
            print(f"{name}: {lacks(missing)}")
            return
        print(f"you predicted {prediction!r}; {question.prompt}: {truth!r}")
        try:
            off = (float(prediction) - float(truth)) / float(truth) if float(truth) else None
        except (TypeError, ValueError):
            off = None
        if off is not None:
            print(f"off by {off:+.0%}" + (" - close." if abs(off) <= 0.2 else ". " + question.hint))
        else:
            print(question.hint)


# What a question's truth raises when the capture lacks what it is about (no loss, no SYN
# sent again, no kernel sample): said in one sentence, never as a traceback.
MISSING = (ValueError, LookupError, StopIteration, ZeroDivisionError)


def lacks(missing: Exception) -> str:
    """One sentence for a capture without what a question asks about."""
    reason = str(missing).strip() if isinstance(missing, ValueError) and str(missing).strip() else \
        "it holds nothing this question is about"
    return (f"this capture cannot answer it ({reason}); study the bundled capture, or make one with "
            "the scenario the notebook names")


def form_problem(question: Question, truth: Any, answer: Any) -> str | None:
    """What is wrong with the answer's *form*, said apart from its content: text where a list or
    a number is asked, units after a number, 1 for True."""
    if question.kind == "list" and isinstance(answer, str):
        return "write a Python list in square brackets, e.g. [1448, 1448], not text in quotes"
    if isinstance(truth, bool):
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            return "write True or False (not 1 or 0)"
        return None
    numeric = question.kind in ("number", "either") or (question.kind == "exact" and isinstance(truth, (int, float)))
    if numeric and isinstance(answer, str):
        try:
            float(answer)
        except ValueError:
            return "write the number alone, without units or words (e.g. 0.043, not '0.043 ms')"
        return "write the number without quotes (e.g. 0.043, not '0.043')"
    return None


def unit_slip(question: Question, truth: Any, answer: Any, tolerance: float, sizes: dict[str, float]) -> str | None:
    """What the answer would be right in, when it is the truth in another unit: seconds given as
    milliseconds ([0, 1000, 3000] for [0, 1, 3]), 0.944 for 944 ms, bytes for segments."""
    if question.kind not in ("number", "list", "exact") or isinstance(truth, bool):
        return None
    factors = {}
    if re.search(r"\(s\b|\bseconds\b", question.prompt):
        factors["milliseconds where the question asks for seconds?"] = 1 / 1000
    if re.search(r"\(ms\b|\bmilliseconds\b", question.prompt):
        factors["seconds where the question asks for milliseconds?"] = 1000.0
    if "segments" in question.prompt:
        factors.update({f"{what}?": 1 / size for what, size in sizes.items()})
    for said, factor in factors.items():
        try:
            scaled = [a * factor for a in answer] if isinstance(answer, (list, tuple)) else answer * factor
        except TypeError:
            return None
        if isinstance(answer, bool) or isinstance(scaled, bool):
            return None
        if _matches(question, truth, scaled, max(tolerance, 0.02)):
            return f"the number is right in another unit: {said}"
    return None


def _matches(question: Question, truth: Any, answer: Any, tolerance: float | None = None) -> bool:
    tolerance = question.tolerance if tolerance is None else tolerance
    if question.kind == "text":
        accepted = truth if isinstance(truth, (set, tuple, list)) else {truth}
        return _text(answer) in {_text(t) for t in accepted}
    if question.kind == "number":
        return _close(truth, answer, tolerance)
    if question.kind == "list":
        try:
            answers = list(answer)
        except TypeError:
            return False
        return len(answers) == len(truth) and all(_close(t, a, tolerance) for t, a in zip(truth, answers))
    if question.kind == "either":      # one of several right numbers (raw or relative)
        return any(_close(t, answer, 0) for t in truth)
    if isinstance(truth, bool):
        if isinstance(answer, bool):
            return answer == truth
        return _text(answer) in ({"yes", "true"} if truth else {"no", "false"})
    return answer == truth or _text(answer) == _text(truth)


def _close(truth: float, answer: Any, tolerance: float) -> bool:
    if isinstance(answer, str):
        return False                     # form_problem says why
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return False
    if math.isnan(truth):
        return math.isnan(value)
    allowed = abs(truth) * tolerance
    if tolerance:
        allowed = max(allowed, 0.0005)   # answers are read to three decimals
    return abs(value - truth) <= allowed


QUESTIONS: dict[str, Question] = {
    # 01: the handshake
    "client_address": Question(
        "IP address and port of the client, as ip:port",
        lambda e: endpoint_text(e.conn.client.address, e.conn.client.port),
        "the client sent the SYN; look at its source address and source port", "text"),
    "server_address": Question(
        "IP address and port of the server, as ip:port",
        lambda e: endpoint_text(e.conn.server.address, e.conn.server.port),
        "the server received the SYN: its destination address and port", "text"),
    "syn_sequence_number": Question(
        "the raw sequence number of the SYN",
        lambda e: e.syn().seq_raw,
        "Wireshark shows 0 (relative); the raw value is the ISN, in 'Sequence Number (raw)' or seq_raw"),
    "syn_flag": Question(
        "the flag that marks a segment as a SYN",
        lambda e: ("SYN", "S", "0x002", "0x02"),
        "look at the Flags field of the first segment: which one bit is set?", "text"),
    "sack_permitted": Question(
        "does the SYN say that SACK is permitted? (True/False)",
        lambda e: e.syn().options.sack_permitted,
        "look for 'SACK permitted' among the SYN's options"),
    "synack_sequence_number": Question(
        "the raw sequence number of the SYN/ACK",
        lambda e: e.syn_ack().seq_raw,
        "the server's own ISN, in the SYN/ACK's raw sequence number"),
    "synack_ack": Question(
        "the acknowledgement number of the SYN/ACK (raw)",
        lambda e: e.syn_ack().ack_raw,
        "it acknowledges the client's SYN: what is the client's ISN, and how many sequence numbers does a SYN use?"),
    "handshake_rtt_ms": Question(
        "milliseconds from the SYN to the ACK that completes the handshake",
        lambda e: round((e.conn.handshake.ack_time - e.conn.handshake.syn_time) / 1e6, 3),
        "subtract the SYN's time from the third segment's time (in ms)", "number", 0.05),
    # 02: the payload
    "first_request_seq": Question(
        "sequence number of the segment carrying the first request (relative or raw)",
        lambda e: (e.data(True)[0].rel_seq, e.data(True)[0].seq_raw),
        "the first client segment with a payload (len > 0), right after the handshake", "either"),
    "first_request_length": Question(
        "how many bytes of payload carry the first request",
        lambda e: e.data(True)[0].length,
        "its len field; count the request's characters and its newline"),
    "request_lengths": Question(
        "the lengths of the client's first three data segments, as a list",
        lambda e: [s.length for s in e.data(True)[:3]],
        "each request line, newline included, is one segment here", "list"),
    "first_reply_ack": Question(
        "the relative acknowledgement number in the server's first reply",
        lambda e: e.data(False)[0].rel_ack,
        "the server acknowledges every byte of the request: 1 + the request's length, in relative numbers"),
    # 03: the teardown
    "first_fin_side": Question(
        "which side sent the first FIN: client or server?",
        lambda e: "client" if e.fins()[0].from_client else "server",
        "find the first segment with the FIN flag, and who sent it", "text"),
    "time_wait_side": Question(
        "which side stays in TIME_WAIT afterwards: client or server?",
        lambda e: "client" if e.fins()[0].from_client else "server",
        "TIME_WAIT is for the side that closed first (RFC 9293, 3.3.2)", "text"),
    # 04: a bulk transfer (the server sends the data)
    "first_segment_lengths": Question(
        "lengths of the data sender's first six data segments, as a list",
        lambda e: [s.length for s in e.data(e.sender_is_client)[:FIRST]],
        "the first is the reply line announcing the data; the rest are as large as a segment can be: the MSS the "
        "handshake announced (1460 on Ethernet) less the 12 bytes of the timestamps option every segment carries "
        "(look for 'TCP Option - Timestamps')", "list"),
    "sample_rtts_ms": Question(
        "SampleRTT (ms) of those six segments, as a list",
        lambda e: e.sample_rtts(e.sender_is_client),
        "for each segment: the first ACK from the receiver with ack >= its seq + len, minus its time", "list", 0.05),
    "estimated_rtt_ms": Question(
        "EstimatedRTT (ms) after those six samples (alpha 0.125, starting at the first)",
        lambda e: e.estimated_rtt(e.sample_rtts(e.sender_is_client)),
        "apply EstimatedRTT = 0.875 * EstimatedRTT + 0.125 * SampleRTT five times, starting at the first sample "
        "(the plain average of the six is another, wrong, number)", "number", 0.05,
        wrong=lambda e: [statistics.mean(e.sample_rtts(e.sender_is_client)),
                         e.sample_rtts(e.sender_is_client)[-1]]),
    "minimum_window": Question(
        "the smallest receive window (bytes, scaled) the receiver advertised after the handshake",
        lambda e: min(e.receiver_windows()),
        "the receiver's 'Calculated window size' (value times the window scale) in its ACKs: find the least"),
    "window_throttled": Question(
        "did the receive window ever stop the sender? (True/False)",
        lambda e: bool(e.capture.frames_with("window_full") or e.capture.frames_with("zero_window")),
        "Wireshark marks it: look for 'TCP Window Full' or 'TCP ZeroWindow' frames"),
    "retransmitted": Question(
        "were any segments retransmitted? (True/False)",
        lambda e: bool(e.capture.frames_with("retransmission")) or e.any_data_sent_again(),
        "look for frames marked as retransmissions, or a sequence number that goes back"),
    "acked_bytes": Question(
        "bytes acknowledged by each of the receiver's first six ACKs that acknowledge data, as a list",
        lambda e: e.acked_bytes(),
        "for each ACK, its ack number minus the previous ACK's", "list"),
    "acks_every_other_segment": Question(
        "does the receiver sometimes ACK two full segments at once? (True/False)",
        lambda e: e.acks_two_segments(),
        "compare the bytes each ACK acknowledges with the segment size (delayed ACKs)"),
    "throughput_mbit": Question(
        "throughput in Mbit/s: the sender's payload over the time from its first data to the ACK of its last",
        lambda e: e.throughput_mbit(),
        "bytes sent by the data sender * 8 / (time of the last ACK - time of the first data segment) / 10^6",
        "number", 0.1),
    "fleet_period_ms": Question(
        "the time (ms) between the fleets of segments in slow start: one round trip (take the median SampleRTT)",
        lambda e: round(statistics.median(x for x in e.sample_rtts(e.sender_is_client, 10_000) if x == x), 3),
        "each fleet leaves when the ACKs for the previous one come back: take the median of all SampleRTTs (not "
        "their mean, which the few long ones pull up)",
        "number", 0.5,
        wrong=lambda e: [statistics.mean(x for x in e.sample_rtts(e.sender_is_client, 10_000) if x == x)]),
    "slow_start_ends_s": Question(
        "seconds from the connection's first packet to the first retransmission, where slow start ends",
        lambda e: e.first_loss_s(),
        "in the time-sequence graph, the first red mark; or the first frame flagged as a retransmission",
        "number", 0.1),
    # 06: UDP
    "udp_requests": Question(
        "how many request datagrams did the client send to the server's port?",
        lambda e: len([d for d in e.udp() if d.to_server]),
        "count the datagrams whose destination port is the server's"),
    "udp_unanswered": Question(
        "how many of those requests got no reply?",
        lambda e: e.udp_unanswered(),
        "pair each request with a reply from the server to the same client port; which is left alone?"),
    "udp_header_bytes": Question(
        "how many bytes long is a UDP header?",
        lambda e: 8,
        "source port, destination port, length, checksum: four fields of two bytes"),
}
