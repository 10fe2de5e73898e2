"""Whether a capture is the student's own: evidence from the wire against their variant.

Each piece of evidence is something the student's variant decides and the capture
shows. The lab's emulator, netem and the capture's place on the server all leave them
where they are:

* the token the lab appends to the student's ECHO lines and BULK requests (``[tcplab:1a2b3c4d]``);
* the size of a BULK download the student made for notebook 04 (their own size);
* in a scenario capture, the segment the student's seed chose to lose: the first
  segment sent again must be the Nth data segment, or cover byte B;
* in a scenario capture, the link's delay the seed chose, as the handshake's round
  trip seen at the server (the lab's emulator delays at the receiver, after the
  server's capture point; netem at the sender, before it: so the round trip seen is
  one direction's delay or the other's, and either counts). A loaded machine only
  ever adds delay (28.1 ms was seen for an 18.0 ms link on a busy host), so this
  check is one-sided: a handshake faster than the link allows contradicts, a slower
  one does not.

A capture is the student's when some evidence matches and none contradicts; when a
token or a BULK size is another student's of the roster, the verdict names them.
The verdict shows every piece of evidence, what matched as well as what did not.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

from lab.course.variant import Course, Variant
from lab.inspect.analysis import Capture
from lab.inspect.expectations import first_sent_again
from lab.inspect.graphs import data_sender
from lab.scenarios.model import made_by

TOKEN = re.compile(rb"\[tcplab:([0-9a-f]{8})\]")
BULK_REQUEST = re.compile(rb"^BULK (\d{1,12})(?: [^\n]*)?\r?$", re.M)
DELAY_TOLERANCE_MS = 1.0
DELAY_TOLERANCE_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class Evidence:
    what: str
    matches: bool
    said: str


@dataclasses.dataclass(frozen=True)
class Identity:
    """The verdict on one capture: ``yours`` True, False (another's), or None (nothing tells)."""

    yours: bool | None
    evidence: tuple[Evidence, ...]

    @property
    def reason(self) -> str:
        """Every piece of evidence, those against the verdict's side marked, those that decided first."""
        if self.yours is None:
            return "nothing in it says whose it is (no token, no BULK size, no seeded event)"
        deciding = [e for e in self.evidence if e.matches == self.yours]
        other = [e for e in self.evidence if e.matches != self.yours]
        return "; ".join([e.said for e in deciding] + [f"(but {e.said})" if self.yours is False else
                                                        f"(against: {e.said})" for e in other])


def judge(capture: Capture, file_name: str, variant: Variant, port: int,
          whose: Callable[[str, int], str | None] = lambda kind, value: None) -> Identity:
    """The identity verdict on an analysed capture (``keep=True``) of ``variant``'s student.

    ``whose(kind, value)`` names the roster student a token ("token") or a BULK size
    ("bulk") belongs to, so that a copied capture says from whom.
    """
    lab = [conn for conn in capture.connections if conn.server.port == port]
    requests = b"".join(s.payload for conn in lab for s in conn.segments or () if s.from_client and s.payload)
    evidence = list(_tokens(requests, variant, whose))
    scenario = made_by(file_name) if file_name.endswith(".pcapng") else None
    if scenario and scenario[1] is not None:
        evidence += _scenario_evidence(scenario[0], lab, variant)
    else:
        evidence += _bulk_sizes(requests, variant, whose)
    if not evidence:
        return Identity(None, ())
    return Identity(all(e.matches for e in evidence), tuple(evidence))


def _tokens(requests: bytes, variant: Variant, whose) -> list[Evidence]:
    found = sorted({match.decode() for match in TOKEN.findall(requests)})
    if not found:
        return []
    others = [token for token in found if token != variant.token]
    if not others:
        return [Evidence("token", True, f"its requests carry your token {variant.token}")]
    named = ", ".join(f"{token} ({whose('token', token) or 'not a student of this roster'})" for token in others)
    return [Evidence("token", False, f"its requests carry the token {named}, not yours ({variant.token})")]


def _bulk_sizes(requests: bytes, variant: Variant, whose) -> list[Evidence]:
    """The student's BULK size matches; a classmate's contradicts; any other size (a scenario's,
    one the student chose while exploring) says nothing either way."""
    sizes = sorted({int(size) for size in BULK_REQUEST.findall(requests)})
    if variant.bulk_bytes in sizes:
        return [Evidence("bulk", True, f"its BULK asks for your {variant.bulk_bytes:,} bytes")]
    named = [(size, student) for size in sizes if (student := whose("bulk", size))]
    if not named:
        return []
    listed = ", ".join(f"{size:,} ({student})" for size, student in named)
    return [Evidence("bulk", False, f"its BULK asks for {listed}, yours is {variant.bulk_bytes:,} bytes")]


def _scenario_evidence(name: str, lab_connections, variant: Variant) -> list[Evidence]:
    from lab.errors import LabError
    from lab.scenarios import model as scenarios

    try:
        scenario = scenarios.load(name, variant.seed)
    except LabError:
        return []
    if not lab_connections:
        return [Evidence("scenario", False, f"it holds no connection of scenario {name}")]
    conn = max(lab_connections, key=lambda c: c.server.payload_bytes + c.client.payload_bytes)
    evidence = []
    for direction in (scenario.to_client, scenario.to_server):
        for text in (direction.events if direction else ()):
            found = _event_evidence(text, conn)
            if found:
                evidence.append(found)
    delays = [d.delay_ms for d in (scenario.to_client, scenario.to_server) if d and d.delay_ms]
    seen = _syn_ack_to_ack_ms(conn)
    if delays and seen is not None:
        possible = any(seen >= delay - DELAY_TOLERANCE_MS - DELAY_TOLERANCE_SHARE * delay for delay in delays)
        expected = " or ".join(f"{delay:.1f}" for delay in delays)
        evidence.append(Evidence("delay", possible,
                                 f"its handshake took {seen:.1f} ms, at least your link's {expected} ms (load "
                                 "only adds delay)" if possible else
                                 f"its handshake took {seen:.1f} ms, faster than your link's {expected} ms allows"))
    return evidence


def _event_evidence(text: str, conn) -> Evidence | None:
    """A drop of the Nth data segment or of byte B: the first segment the server sent again."""
    action, what, count = (text.split(":") + ["", "", ""])[:3]
    if action != "drop" or what not in ("data", "byte") or not count.isdigit():
        return None
    nth = int(count)
    sender_is_client = data_sender(conn.segments)
    sent = [s for s in conn.segments if s.from_client == sender_is_client and s.length]
    first_seen: dict[int, int] = {}
    for segment in sent:
        first_seen.setdefault(segment.rel_seq, len(first_seen) + 1)
    found = first_sent_again(sent)            # whatever Wireshark calls the copy: RACK's is often "out-of-order"
    again = found[0] if found else None
    if again is None:
        return Evidence("lost segment", False, f"nothing was sent again, where your seed drops {what} {nth:,}")
    if what == "data":
        position = first_seen.get(again.rel_seq)
        return Evidence("lost segment", position == nth,
                        f"the first segment sent again is data segment {position}, your seed dropped segment {nth}")
    covers = again.rel_seq <= nth + 1 < again.rel_seq + again.length + 1
    return Evidence("lost segment", covers, f"the first segment sent again starts at byte {again.rel_seq - 1:,}, "
                                            f"your seed dropped from byte {nth:,}")


def _syn_ack_to_ack_ms(conn) -> float | None:
    """The server's SYN/ACK to the client's ACK: the round trip seen at the server, without
    the time lost SYNs took (syn-loss)."""
    hs = conn.handshake
    syn_ack = next((s.time_ns for s in conn.segments if s.frame == hs.syn_ack), None)
    return None if syn_ack is None or hs.ack is None else (hs.ack_time - syn_ack) / 1e6


def roster_lookup(course: Course, roster: list[str]) -> Callable[[str, str | int], str | None]:
    """whose(kind, value) for judge: the roster student with that token or BULK size."""
    variants = [course.variant(student) for student in roster]
    tokens = {v.token: v.student for v in variants}
    sizes = {v.bulk_bytes: v.student for v in variants}
    return lambda kind, value: tokens.get(str(value)) if kind == "token" else sizes.get(int(value))
