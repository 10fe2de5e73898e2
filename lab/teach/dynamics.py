"""Exercises and predictions on TCP in time: congestion control (notebook 07), timers and flow control (08).

These read a capture *and* the kernel's samples kept beside it (``invoke
capture --kernel``, or any ``invoke scenario``): the sender's congestion window,
ssthresh, RTO and its backoff, which no capture shows. Two kinds of cell:

* exercises, as in notebooks 01-06: ``dyn.check(name, answer)`` says right or
  gives a hint, never the answer;
* predict-then-reveal: the learner writes a prediction *before* seeing the
  answer (``prediction = ...``), then ``dyn.reveal_against(name, prediction)``
  shows what the capture and the kernel say, and how far off the guess was.
  Without a prediction it shows nothing: guessing after seeing is not predicting.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from pathlib import Path

from lab.inspect.analysis import stream_segments
from lab.inspect.congestion import Cut, bbr_phases, cuts, increase_per_rtt
from lab.inspect.decode import ACK, SYN
from lab.inspect.expectations import Evidence, delayed_acks, first_sent_again, rtt_range, second_write_waits
from lab.inspect.fairness import Shares, median_jain, shares
from lab.inspect.kernel import KernelSample, algorithm_of, connection_samples, kernel_file_of, read_kernel_file
from lab.inspect.tcp import KEEP_ALIVE, WINDOW_UPDATE, ZERO_WINDOW, Segment
from lab.inspect.timers import Resend, backoffs, linux_rto_ms, resends, state_at
from lab.paths import PROJECT_ROOT
from lab.teach.exercises import QUESTIONS, CaptureMismatch, Exercises, Question

# The bundled captures of notebooks/data/ and the scenario (seed 1) each was made by.
DATA = PROJECT_ROOT / "notebooks" / "data"
DATA_SCENARIOS = {"slow-start.pcapng": "slow-start", "aimd.pcapng": "aimd", "bufferbloat-reno.pcapng": "bufferbloat",
                  "bufferbloat-bbr.pcapng": "bufferbloat", "syn-loss.pcapng": "syn-loss",
                  "tail-loss-probe.pcapng": "tail-loss-probe", "tail-loss-rto.pcapng": "tail-loss-rto",
                  "zero-window.pcapng": "zero-window", "nagle.pcapng": "nagle", "nagle-off.pcapng": "nagle-off",
                  "bbr.pcapng": "bbr", "fairness.pcapng": "fairness", "fairness-bbr-reno.pcapng": "fairness-bbr-reno"}


@dataclasses.dataclass
class Flight:
    """One round trip's worth of new data: what the ACKs of the flight before let out."""

    segments: list
    opened_ns: int | None           # the ACK that began it (None for the first flight)
    quiet_from_ns: int | None       # the ACK before that one: between the two, nothing arrives


class Dynamics(Exercises):
    """Exercises on one capture and its kernel samples (the lab's connection, or its biggest)."""

    def __init__(self, path: str | Path, bulk: bool = True, port: int | None = None, capture=None,
                 samples: list | None = None) -> None:
        """``capture`` and ``samples``: the capture's analysis and its kernel file's samples, when the
        caller (the grader) has them already."""
        super().__init__(path, bulk=bulk, port=port, capture=capture)
        self.options = {"bulk": bulk, "port": port}
        kernel_path = kernel_file_of(self.path)
        if kernel_path is None:
            raise CaptureMismatch(f"{self.path} has no kernel samples beside it ({self.path.stem}.kernel.jsonl): "
                                  "make it with 'invoke scenario NAME' or 'invoke capture --kernel'")
        self.all_samples = samples if samples is not None else read_kernel_file(kernel_path)
        self.kernel = connection_samples(self.all_samples, self.tcp)

    @property
    def questions(self) -> dict[str, Question]:
        return {**QUESTIONS, **DYNAMICS_QUESTIONS}

    # --- what the kernel and the capture say -----------------------------------------

    @property
    def start_ns(self) -> int:
        return self.segments[0].time_ns

    def seconds(self, time_ns: int) -> float:
        return (time_ns - self.start_ns) / 1e9

    @functools.cached_property
    def scenario(self):
        """The bundled scenario that made this capture, with its seed's numbers, when its name says
        so (NAME-CC-seedN.pcapng, or a bundled NAME.pcapng: seed 1); else None. Its own numbers
        (the pause, the queue) are answers a learner may give without measuring: wrong ones."""
        from lab.scenarios import model as scenarios

        bundled = DATA_SCENARIOS.get(self.path.name) if self.path.parent == DATA else None
        found = (bundled, 1) if bundled else scenarios.made_by(self.path.name)
        return scenarios.load(found[0], found[1] or 1) if found else None

    def scenario_numbers(self, key: str) -> list[float]:
        """A number of the scenario's exchange (pause_for) or of its link to the client
        (queue_packets, ...), as a list: empty where the capture's scenario is unknown."""
        if self.scenario is None:
            return []
        link = self.scenario.to_client
        value = self.scenario.exchange.get(key, getattr(link, key, None) if link else None)
        return [float(value)] if isinstance(value, (int, float)) else []

    def link_numbers(self) -> list[float]:
        """What the scenario's link predicts without the capture: the full queue's delay (ms)."""
        link = self.scenario.to_client if self.scenario else None
        if not link or not link.rate_kbit:
            return []
        return [link.queue_packets * 1500 * 8 / link.rate_kbit]

    def capacity_segments(self) -> list[float]:
        """The link's bandwidth-delay product plus its queue, in segments: where a textbook says
        slow start must overflow, a prediction rather than the kernel's number."""
        link = self.scenario.to_client if self.scenario else None
        mss = next((k.values.get("snd_mss") for k in self.established() if k.values.get("snd_mss")), None)
        if not link or not link.rate_kbit or not mss:
            return []
        back = self.scenario.to_server.delay_ms if self.scenario.to_server else 0.0
        bdp_bytes = link.rate_kbit * 1000 / 8 * (link.delay_ms + back) / 1000     # a round trip's worth
        return [bdp_bytes / mss + link.queue_packets]

    @functools.cached_property
    def sender(self) -> list[KernelSample]:
        """The data sender's samples while it had a connection (ESTABLISHED and after)."""
        return self.kernel["client" if self.sender_is_client else "server"]

    def established(self) -> list[KernelSample]:
        return [k for k in self.sender if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]

    def initial_cwnd(self) -> int:
        return self.established()[0].values["cwnd"]

    @functools.cached_property
    def flights(self) -> list[Flight]:
        """The sender's first transmissions, flight by flight, as the ACK clock groups them.

        A flight ends when the first ACK covering its first segment arrives: from then
        on the sender answers that flight's ACKs with the next one. In slow start each
        flight is twice the one before (10, 20, 40, 80 segments), whatever the link's delay.
        """
        firsts = {id(segment) for segment in self.data(self.sender_is_client)}
        flights, last_ack_ns = [Flight([], None, None)], None
        for segment in self.segments:
            if segment.from_client == self.sender_is_client:
                if id(segment) in firsts:
                    flights[-1].segments.append(segment)
                continue
            if not segment.flags & ACK:
                continue
            current = flights[-1].segments
            if current and segment.rel_ack > current[0].rel_seq:
                flights.append(Flight([], segment.time_ns, last_ack_ns))
            last_ack_ns = segment.time_ns
        return [flight for flight in flights if flight.segments]

    def cwnd_after_flights(self, count: int) -> int:
        """The sender's cwnd once the ACKs of its first ``count`` flights are in: its kernel's,
        between the last of those ACKs and the first ACK of the next flight. No ACK arrives
        in between, so cwnd holds still there: the question has one answer."""
        flights = self.flights
        if len(flights) <= count + 1:
            raise ValueError(f"the capture has {len(flights)} flights of data, not {count + 2}")
        flight = flights[count + 1]         # its first ACK covers flight ``count``: the ones before are in
        opened = flight.opened_ns
        assert opened is not None, "only the first flight has no ACK that opened it"
        quiet_ns = ((flight.quiet_from_ns or opened) + opened) // 2
        sample = state_at(self.established(), quiet_ns)
        if sample is None:
            raise ValueError("no kernel sample of the sender before that flight")
        return sample.values["cwnd"]

    def first_reduction(self) -> tuple[int, int]:
        """(cwnd just before the first loss was noticed, the ssthresh set then), in segments."""
        samples = self.established()
        at = next(i for i, k in enumerate(samples) if k.values.get("ssthresh") is not None)
        before = max(k.values["cwnd"] for k in samples[:max(at, 1)])
        return before, samples[at].values["ssthresh"]

    def request_waits_ms(self) -> list[float]:
        """For each request after the first written in two pieces: ms from its first piece to its
        last, as the server saw them arrive (lab.inspect.expectations)."""
        return [round(wait, 1) for wait in second_write_waits(Evidence(self.segments, True))]

    def second_write_wait_ms(self) -> float:
        waits = self.request_waits_ms()
        if not waits:
            raise ValueError("no request was written in two pieces")
        return round(statistics.median(waits), 1)

    def delayed_ack_ms(self) -> float:
        """The median wait of the server's ACK of a request's first piece (its delayed ACK)."""
        waits = delayed_acks(Evidence(self.segments, True))
        if not waits:
            raise ValueError("the server acknowledged no first piece on its own")
        return round(statistics.median(waits), 1)

    def window_growth(self) -> float:
        """The receiver's largest advertised window over the one in its first ACK (one decimal)."""
        acks = [s for s in self.segments if s.from_client != self.sender_is_client and s.flags & ACK
                and not s.flags & SYN and s.window]
        if not acks:
            raise ValueError("the receiver sent no ACK with a window")
        return round(max(ack.window for ack in acks) / acks[0].window, 1)

    def bbr_phase_times_s(self) -> list[tuple[float, str]]:
        """(s since the first frame, phase) each time a bbr sender's phase changed."""
        return [(round(self.seconds(at), 2), phase) for at, phase in bbr_phases(self.sender)]

    def first_phase_s(self, wanted: str) -> float:
        found = next((at for at, phase in self.bbr_phase_times_s() if phase == wanted), None)
        if found is None:
            raise ValueError(f"the sender never entered {wanted} (is it bbr, and was the download long enough?)")
        return found

    def bbr_min_rtt_ms(self) -> float:
        """bbr's min RTT estimate (ms) at the end of the download."""
        found = [k.values["bbr_min_rtt_us"] for k in self.sender if k.values.get("bbr_min_rtt_us")]
        if not found:
            raise ValueError("no bbr state in the sender's samples")
        return round(found[-1] / 1000, 1)

    @functools.cached_property
    def flow_connections(self) -> list:
        """Every download to the lab's server in the capture."""
        return [conn for conn in self.capture.connections if conn.server.port == self.port and conn.server.payload_bytes]

    @functools.cached_property
    def flows(self) -> list[list[Segment]]:
        """Each download's segments."""
        return [stream_segments(self.path, conn.stream) for conn in self.flow_connections]

    def flow_series(self) -> dict[str, list[KernelSample]]:
        """Each download's sender's samples, by "flow N (algorithm)"."""
        found = {}
        for number, conn in enumerate(self.flow_connections, 1):
            series = connection_samples(self.all_samples, conn)["server"]
            cc = algorithm_of(series) or "?"
            found[f"flow {number} ({cc})"] = series
        return found

    def flow_windows(self) -> dict[str, float]:
        """Each download's sender's algorithm and its median cwnd (segments), from the kernel's samples."""
        found = {}
        for conn in self.flow_connections:
            series = [k for k in connection_samples(self.all_samples, conn)["server"]
                      if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]
            cc = algorithm_of(series)
            if cc and series:
                found[cc] = statistics.median(k.values["cwnd"] for k in series)
        return found

    def window_ratio(self, first: str = "bbr", second: str = "reno") -> float:
        windows = self.flow_windows()
        if first not in windows or second not in windows:
            raise ValueError(f"the capture's downloads ran {', '.join(windows) or 'no algorithm the samples show'}, "
                             f"not {first} and {second}")
        return round(windows[first] / windows[second], 1)

    def share_of(self, algorithm: str) -> float:
        """The share (%) of what the link delivered that the download sent with ``algorithm`` got."""
        found = self.flow_shares()
        for number, conn in enumerate(self.flow_connections):
            series = connection_samples(self.all_samples, conn)["server"]
            if algorithm_of(series) == algorithm and found.rates:
                return round(100 * found.share(number))
        raise ValueError(f"no download in this capture was sent with {algorithm} while another ran")

    def flow_shares(self) -> Shares:
        return shares(self.flows)

    def jain(self) -> float:
        found = median_jain(self.flow_shares())
        if found is None:
            raise ValueError("the capture holds no two downloads under way at once")
        return round(found, 2)

    def first_flow_share_pct(self) -> float:
        found = self.flow_shares()
        if not found.rates:
            raise ValueError("the capture holds no two downloads under way at once")
        return round(100 * found.share(0))

    def window_cuts(self) -> list[Cut]:
        """Each time the sender cut its window (lab.inspect.congestion): ca_state recovery or loss."""
        return cuts(self.sender)

    def cut_factor(self) -> float:
        """The median ssthresh set at a cut, over the window before it (two decimals)."""
        found = self.window_cuts()
        if not found:
            raise ValueError("the sender never cut its window in this capture")
        return round(statistics.median(cut.factor for cut in found), 2)

    def climb_per_rtt(self) -> float:
        """Segments per round trip the window grew by between cuts (the median climb)."""
        found = increase_per_rtt(self.sender)
        if found is None:
            raise ValueError("no stretch of congestion avoidance in this capture")
        return round(found, 2)

    def rtt_late_ms(self) -> float:
        """The median RTT of the second half of the transfer (what a queue adds shows here)."""
        return round(self._rtt_range()[2], 1)

    def queue_delay_ms(self) -> float:
        least, _, late = self._rtt_range()
        return round(late - least, 1)

    def _rtt_range(self) -> tuple[float, float, float]:
        found = rtt_range(Evidence(self.segments, self.sender_is_client))
        if found is None:
            raise ValueError("the capture has no RTT sample of the sender's data")
        return found

    def syn_times_s(self) -> list[float]:
        syns = [s for s in self.segments if s.flags & SYN and not s.flags & ACK and s.from_client]
        return [round(self.seconds(s.time_ns), 3) for s in syns]

    def client_rtos_s(self) -> list[float]:
        """The client's RTO while in SYN_SENT, each value once: the kernel's timer, doubling."""
        values = []
        for k in self.kernel["client"]:
            if k.values.get("state") == "SYN_SENT" and k.values.get("rto_us"):
                rto = round(k.values["rto_us"] / 1e6, 3)
                if rto not in values:
                    values.append(rto)
        return values

    def sent_again(self):
        """(the sender's first data segment sent again, when its first copy went), or None."""
        return first_sent_again([s for s in self.segments if s.from_client == self.sender_is_client])

    def retransmission_gap_ms(self) -> float:
        """From the first data segment sent again back to its first transmission."""
        found = self.sent_again()
        if found is None:
            raise ValueError("nothing was sent again")
        return round((found[0].time_ns - found[1]) / 1e6, 1)

    @functools.cached_property
    def resends(self) -> list[Resend]:
        """The sender's data sent again, each with what its kernel says sent it (lab.inspect.timers)."""
        return resends(self.segments, self.sender_is_client, self.sender)

    def tail_cause(self) -> str:
        """What sent the lost data again first: "probe" (a tail loss probe) or "timer" (an RTO)."""
        if not self.resends:
            raise ValueError("nothing was sent again")
        return self.resends[0].cause

    def copy_gaps_ms(self) -> list[float]:
        """The waits (ms) before each copy of the lost data: each from the copy before it."""
        return [round(resend.waited_ms, 1) for resend in self.resends]

    def rto_backoffs_ms(self) -> list[float]:
        """The sender's RTO (ms) at backoff 0, 1, 2, ...: the timer doubling after each expiry."""
        return [rto for _, rto in backoffs(self.sender)]

    def cwnd_after_timeout(self) -> int:
        """The sender's cwnd (segments) once its retransmission timer had fired."""
        timed_out = next((resend for resend in self.resends if resend.cause == "timer"), None)
        if timed_out is None:
            raise ValueError("the retransmission timer never fired in this capture")
        if timed_out.after is None:
            raise ValueError("no kernel sample after the timer fired")
        return timed_out.after.values["cwnd"]

    def rto_formula(self) -> tuple[float, float, float, float]:
        """(srtt, rttvar, Linux's srtt + max(4 x rttvar, 200 ms) rounded up to a 4 ms tick, the
        kernel's RTO), in ms, from the sender's first sample with an RTT."""
        first = next(k for k in self.sender if k.values.get("srtt_us") and k.values.get("state") == "ESTABLISHED")
        srtt, rttvar = first.values["srtt_us"] / 1000, first.values["rttvar_us"] / 1000
        return srtt, rttvar, linux_rto_ms(srtt, rttvar), first.values["rto_us"] / 1000

    def rto_before_retransmission_ms(self) -> float:
        """The sender's RTO, as its kernel had it, just before it sent the lost data again."""
        found = self.sent_again()
        gap_end = found[0].time_ns if found else self.start_ns
        before = [k for k in self.sender if k.time_ns < gap_end and k.values.get("rto_us")]
        return round(before[-1].values["rto_us"] / 1000, 1)

    def zero_window_s(self) -> float:
        received = [s for s in self.segments if s.from_client != self.sender_is_client]
        zero = next(s for s in received if s.analysis & ZERO_WINDOW)
        opened = next(s for s in received if s.analysis & WINDOW_UPDATE and s.time_ns > zero.time_ns)
        return round((opened.time_ns - zero.time_ns) / 1e9, 3)

    def window_probes(self) -> int:
        return sum(1 for s in self.segments if s.from_client == self.sender_is_client and s.analysis & KEEP_ALIVE)

    @property
    def predictions(self) -> dict[str, Question]:
        return PREDICTIONS


DYNAMICS_QUESTIONS: dict[str, Question] = {
    # 07: congestion control
    "initial_cwnd": Question(
        "the sender's congestion window (segments) when its connection opened",
        lambda d: d.initial_cwnd(),
        "the kernel's first ESTABLISHED sample of the sender: its cwnd (RFC 6928 sets the initial window)"),
    # Numbers read from the kernel's samples: 5% covers reading a neighbouring sample; the wrong
    # answers are the flight before (half), and what the link predicts without the kernel.
    "cwnd_at_first_loss": Question(
        "the sender's largest cwnd (segments) before its first loss",
        lambda d: d.first_reduction()[0],
        "in the kernel's series, the cwnd before ssthresh first gets a value", "number", 0.05,
        wrong=lambda d: [d.first_reduction()[0] / 2, *d.capacity_segments()]),
    "ssthresh_after_loss": Question(
        "the ssthresh (segments) the sender set at its first loss",
        lambda d: d.first_reduction()[1],
        "the first sample whose ssthresh is not None", "number", 0.05,
        wrong=lambda d: [d.first_reduction()[0], d.first_reduction()[0] * 0.7]),
    "reduction_factor": Question(
        "ssthresh after the loss divided by cwnd before it (two decimals)",
        lambda d: round(d.first_reduction()[1] / d.first_reduction()[0], 2),
        "divide the two numbers above; reno halves, cubic keeps 0.7", "number", 0.05,
        wrong=lambda d: [0.5, 0.7]),          # each algorithm's factor is the other's wrong answer
    "window_growth": Question(
        "the receiver's largest advertised window divided by the one in its first ACK (one decimal)",
        lambda d: d.window_growth(),
        "Wireshark's tcp.window_size (scaled by the SYN's window scale): its largest value over its first",
        "number", 0.1, wrong=lambda d: [1.0]),       # the 64 KiB a window without scaling could say
    "aimd_cuts": Question(
        "how many times the sender cut its window (entered recovery or loss)",
        lambda d: len(d.window_cuts()),
        "count the samples where ca_state turns to recovery or loss"),
    "aimd_cut_factor": Question(
        "ssthresh set at a cut divided by cwnd just before it (two decimals, the median of the cuts)",
        lambda d: d.cut_factor(),
        "at each cut: the new ssthresh over the largest cwnd since the cut before", "number", 0.1,
        wrong=lambda d: [0.7, 1.0]),      # cubic's factor, and no cut at all
    "drain_s": Question(
        "when (s, since the first frame) bbr's start-up ended and it began to drain the queue",
        lambda d: d.first_phase_s("drain"),
        "the sender's samples: the first whose pacing_gain is 88 (1/2.89, in units of 1/256)", "number", 0.1),
    "bbr_min_rtt_ms": Question(
        "bbr's own estimate of the shortest round trip (ms), at the end of the download",
        lambda d: d.bbr_min_rtt_ms(),
        "the sender's samples: bbr_min_rtt_us, last value; it is more than the link's delay: each segment "
        "also takes its time to cross the slow link", "number", 0.05,
        wrong=lambda d: [link.delay_ms + (d.scenario.to_server.delay_ms if d.scenario.to_server else 0)
                         for link in [d.scenario.to_client] if d.scenario and link]),   # the delay alone
    "jain_index": Question(
        "Jain's fairness index of the two downloads' rates (two decimals, the median over half-second windows)",
        lambda d: d.jain(),
        "(x1 + x2)^2 / (2 (x1^2 + x2^2)) for each window's two rates; lab.inspect.fairness does it", "number", 0.02,
        wrong=lambda d: [0.5]),            # one flow taking everything
    "window_ratio": Question(
        "bbr's median cwnd divided by reno's, the two downloads side by side (one decimal)",
        lambda d: d.window_ratio(),
        "each download's sender in the kernel's samples: its algorithm (cc) and its cwnd; take each median",
        "number", 0.1, wrong=lambda d: [1.0]),     # equal windows: what two renos keep
    "queue_delay_ms": Question(
        "how long (ms) a packet waits in the queue late in the transfer: the median RTT of the "
        "second half minus the least RTT",
        lambda d: d.queue_delay_ms(),
        "the RTT graph: its floor is the link alone, its level late in the transfer the link and the queue",
        "number", 0.2, wrong=lambda d: d.link_numbers()),        # the full queue's delay, computed not measured
    # 08: timers and flow control
    "syn_times_s": Question(
        "the times (s, since the first packet) of every SYN the client sent, as a list",
        lambda d: d.syn_times_s(),
        "filter the capture for SYNs without ACK; read their times", "list", 0.05),
    "client_rtos_s": Question(
        "the client's RTO (s) while it waited in SYN_SENT, each value once, as a list",
        lambda d: d.client_rtos_s(),
        "the kernel's samples of the client in SYN_SENT: their rto_us", "list", 0.05),
    "tail_retransmission_ms": Question(
        "how long (ms) the server waited before sending its lost reply again",
        lambda d: d.retransmission_gap_ms(),
        "the time of the retransmitted frame minus the time of the original", "number", 0.1),
    "tail_mechanism": Question(
        "what sent the lost reply again: \"probe\" (a tail loss probe) or \"timer\" (a retransmission timeout)",
        lambda d: d.tail_cause(),
        "read the server's kernel samples just after the copy left: its ca_state and backoff say which "
        "mechanism sent it (the cell before the exercises says what each looks like)", "text"),
    "rto_before_it_ms": Question(
        "the server's RTO (ms), as its kernel had it just before that retransmission",
        lambda d: d.rto_before_retransmission_ms(),
        "the server's kernel samples: rto_us, just before the retransmission", "number", 0.1),
    "rto_backoffs_ms": Question(
        "the server's RTO (ms) at backoff 0, 1 and 2, as a list",
        lambda d: d.rto_backoffs_ms(),
        "the server's kernel samples: rto_us each time backoff changes", "list", 0.05),
    "cwnd_after_timeout": Question(
        "the server's cwnd (segments) once its retransmission timer had fired",
        lambda d: d.cwnd_after_timeout(),
        "the server's kernel sample right after the first copy in ca_state loss"),
    "delayed_ack_ms": Question(
        "how long (ms) the server waited before acknowledging a request's first piece on its own",
        lambda d: d.delayed_ack_ms(),
        "from a first piece (\"ECHO \") to the server's ACK of it that carries no data; leave out the first request",
        "number", 0.15, wrong=lambda d: [200.0]),      # other stacks' (and the RFC's most) 200 ms
    "zero_window_s": Question(
        "how long (s) the client's window stayed at zero",
        lambda d: d.zero_window_s(),
        "from the frame marked TCP ZeroWindow to the window update after it", "number", 0.15,
        wrong=lambda d: d.scenario_numbers("pause_for") or [2.0]),     # how long the client paused: not measured
    "window_probes": Question(
        "how many zero-window probes the server sent",
        lambda d: d.window_probes(),
        "Linux's probes carry no data and the sequence number one below the next: Wireshark calls them TCP "
        "Keep-Alive"),
}

PREDICTIONS: dict[str, Question] = {
    "cwnd_after_3_rounds": Question(
        "the kernel's cwnd once the ACKs of the first three flights are in (the fourth flight's size)",
        lambda d: d.cwnd_after_flights(3),
        "in slow start each ACKed segment adds one segment to cwnd: twice as much every round trip"),
    "increase_per_rtt": Question(
        "segments per round trip the window grew by between cuts",
        lambda d: d.climb_per_rtt(),
        "in congestion avoidance reno adds one segment once a whole window has been acknowledged"),
    "probe_rtt_s": Question(
        "when (s, since the first frame) bbr first drops its window to 4 segments to measure the round trip",
        lambda d: d.first_phase_s("probe_rtt"),
        "bbr probes the round trip when its min RTT estimate is 10 s old without a lower sample"),
    "fair_share_pct": Question(
        "the share (%) of what the link delivered that the first download got, while both ran",
        lambda d: d.first_flow_share_pct(),
        "the same algorithm and the same round trip: neither has an advantage"),
    "bbr_share_pct": Question(
        "the share (%) of what the link delivered that the download sent with bbr got, beside reno",
        lambda d: d.share_of("bbr"),
        "bbr does not halve its window at a loss; reno does, whichever of them lost the segment"),
    "late_rtt_ms": Question(
        "the median RTT (ms) in the second half of the transfer",
        lambda d: d.rtt_late_ms(),
        "a full queue of N packets adds N x 1,500 bytes / the link's rate to every round trip"),
    "third_syn_s": Question(
        "the time (s) of the third SYN",
        lambda d: d.syn_times_s()[2],
        "the timer starts at 1 s and doubles after every expiry (RFC 6298, 5.5)"),
    "tail_retransmission_ms": Question(
        "how long (ms) the server waited before sending its lost reply again",
        lambda d: d.retransmission_gap_ms(),
        "with one segment outstanding Linux probes after 2 x srtt + 200 ms, or at the RTO (srtt + "
        "max(4 x rttvar, 200 ms)) if that is sooner"),
    "third_copy_wait_ms": Question(
        "how long (ms) the server waited before its third copy of the reply (from the second)",
        lambda d: d.copy_gaps_ms()[2],
        "each expiry of the retransmission timer doubles it (backoff): the second wait was one RTO"),
    "second_write_wait_ms": Question(
        "how long (ms) the second piece of a request waited after the first, with Nagle's algorithm on",
        lambda d: d.second_write_wait_ms(),
        "Nagle sends a small write once the earlier data is acknowledged; the server delays that ACK (40 ms on "
        "Linux) while it has nothing to send with it"),
    "probes": Question(
        "how many zero-window probes the server sent while the client did not read",
        lambda d: d.window_probes(),
        "the persist timer starts at the RTO and doubles after every probe"),
}
