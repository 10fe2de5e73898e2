"""Scenarios: what the link does to which packet, the same for everyone, and what must follow.

A scenario is a TOML file in lab/scenarios/ (the bundled ones) or any file a
learner or an instructor writes. It names:

* ``exchange``: what the client does (``send = [...]`` request lines, with ``nagle``
  and ``split_at`` for small writes, or ``bulk = N`` bytes, with ``rcvbuf``,
  ``pause_after`` and ``pause_for`` for a slow reader, or ``flows`` downloads at once, each
  with its own congestion control where ``flow_cc`` names them);
* ``[to_client]`` and ``[to_server]``: the link each way (``delay_ms``,
  ``jitter_ms``, ``loss_pct``, ``rate_kbit``, ``queue_packets``) and ``events``,
  the packet-level ones lab.inside.linkemu applies (``"drop:data:5"``);
* ``[expect]``: the outcome, as checks of lab.inspect.expectations; a table
  ``[expect.bbr]`` replaces it where the server's congestion control is bbr;
* ``cc``: the congestion control the lesson is about (slow start is reno's and
  cubic's, not bbr's), if it is about one: a lab brought up for the scenario runs
  it where the host allows, and a lab already up with another is said to differ.

Any number may be a range ``[low, high]``, also inside an event
(``"drop:data:[15, 40]"``): the seed picks within it, so two students with two
seeds lose different segments on links of different delays, and each result
can be re-derived from its seed.

This module is the model: a scenario file's meaning, checked, with its numbers drawn
from the seed, and which scenario and seed made a capture (from its name). It runs
nothing: lab.host.scenario runs one (`invoke scenario NAME`), lab.teach and
lab.course read it.
"""

from __future__ import annotations

import dataclasses
import random
import re
import tomllib
from pathlib import Path
from typing import Any, Sequence

from lab.errors import LabError
from lab.inside.link_core import Event
from lab.paths import CAPTURES_DIR

BUNDLED = Path(__file__).resolve().parent
MAX_FILE_BYTES = 64 << 10
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
_CC = re.compile(r"[a-z0-9_]{1,16}")
_RANGE = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*\]")
LINK_NUMBERS = {"delay_ms": 60_000, "jitter_ms": 60_000, "loss_pct": 100, "rate_kbit": 10_000_000,
                "queue_packets": 100_000}
EXCHANGE_KEYS = {"send", "bulk", "rcvbuf", "pause_after", "pause_for", "nagle", "split_at", "flows", "flow_cc"}


@dataclasses.dataclass(frozen=True)
class Direction:
    """The link one way, its numbers chosen."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_kbit: float = 0.0
    queue_packets: int = 1000
    events: tuple[str, ...] = ()

    def emulator_options(self, source: str, seed: int) -> list[str]:
        options = ["--source", source, "--delay-ms", f"{self.delay_ms:g}", "--seed", str(seed)]
        if self.jitter_ms:
            options += ["--jitter-ms", f"{self.jitter_ms:g}"]
        if self.loss_pct:
            options += ["--loss", f"{self.loss_pct:g}"]
        if self.rate_kbit:
            options += ["--rate-kbit", f"{self.rate_kbit:g}", "--queue-packets", str(self.queue_packets)]
        return options + [option for event in self.events for option in ("--event", event)]

    def __str__(self) -> str:
        parts = [f"delay {self.delay_ms:g} ms"] if self.delay_ms else []
        parts += [f"jitter {self.jitter_ms:g} ms"] if self.jitter_ms else []
        parts += [f"loss {self.loss_pct:g}%"] if self.loss_pct else []
        parts += [f"rate {self.rate_kbit / 1000:g} Mbit/s, queue {self.queue_packets} packets"] if self.rate_kbit else []
        return ", ".join(parts + list(self.events)) or "plain"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A scenario with its seed's numbers."""

    name: str
    seed: int
    title: str
    lesson: str
    exchange: dict[str, Any]
    to_client: Direction | None
    to_server: Direction | None
    expect: dict[str, Any]
    expect_by_cc: dict[str, dict[str, Any]]
    cc: str | None = None            # the congestion control the lesson is about, if one

    def expectations(self, cc: str | None) -> dict[str, Any]:
        return self.expect_by_cc.get(cc or "", self.expect)


def bundled() -> list[str]:
    """The names of the bundled scenarios."""
    return sorted(path.stem for path in BUNDLED.glob("*.toml"))


def needs_refused(allowed: Sequence[str]) -> dict[str, list[str]]:
    """The bundled scenarios that need a congestion control a kernel's containers may not use
    (``allowed``: its tcp_allowed_congestion_control), by name: each with what it needs."""
    refused = {}
    for name in bundled():
        raw = tomllib.loads((BUNDLED / f"{name}.toml").read_text())    # ours: no numbers to draw
        wanted = [raw.get("cc"), *(raw.get("exchange") or {}).get("flow_cc", [])]
        needed = [cc for cc in dict.fromkeys(wanted) if isinstance(cc, str) and cc not in allowed]
        if needed:
            refused[name] = needed
    return refused


def refused_words(refused: dict[str, list[str]]) -> str:
    """``needs_refused``'s answer as a learner reads it: "aimd (reno); fairness-bbr-reno (bbr, reno)"."""
    return "; ".join(f"{name} ({', '.join(needed)})" for name, needed in refused.items())


def scenario_file(name: str) -> Path:
    """A bundled scenario by name, or a .toml file by its path."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise LabError(f"no scenario file {name}: give a bundled name ({', '.join(bundled())}) or a .toml file")
        return path
    if not _NAME.fullmatch(name) or not (BUNDLED / f"{name}.toml").is_file():
        raise LabError(f"no scenario {name!r}: the bundled ones are {', '.join(bundled())} (or give a .toml file)")
    return BUNDLED / f"{name}.toml"


def load(name: str, seed: int = 1) -> Scenario:
    """A scenario with its numbers chosen by ``seed``; a one-line LabError for a bad file."""
    path = scenario_file(name)
    try:
        with path.open("rb") as source:
            text = source.read(MAX_FILE_BYTES + 1)
        if len(text) > MAX_FILE_BYTES:
            raise LabError(f"{path}: larger than {MAX_FILE_BYTES >> 10} KiB, not a scenario")
        raw = tomllib.loads(text.decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"{path}: not a readable TOML scenario ({exc})") from None
    return resolve(path.stem, raw, seed, str(path))


def resolve(name: str, raw: dict[str, Any], seed: int, where: str = "scenario") -> Scenario:
    """Check a parsed scenario and choose its ranges with ``seed`` (pure: tested without files)."""
    from lab.inspect.expectations import CHECKS

    rng = random.Random(f"{name}/{seed}")
    exchange = raw.get("exchange")
    if not isinstance(exchange, dict) or set(exchange) - EXCHANGE_KEYS or ("send" in exchange) == ("bulk" in exchange):
        raise LabError(f"{where}: 'exchange' needs send = [lines] or bulk = N "
                       f"(with {', '.join(sorted(EXCHANGE_KEYS - {'send', 'bulk'}))})")
    if "send" in exchange and not (isinstance(exchange["send"], list) and exchange["send"]
                                   and all(isinstance(line, str) for line in exchange["send"])):
        raise LabError(f"{where}: exchange.send is a list of request lines, e.g. [\"ECHO hi\"]")
    if not isinstance(exchange.get("nagle", False), bool):
        raise LabError(f"{where}: exchange.nagle is true or false")
    flow_cc = exchange.get("flow_cc", [])
    if not (isinstance(flow_cc, list) and all(isinstance(name, str) and _CC.fullmatch(name) for name in flow_cc)):
        raise LabError(f"{where}: exchange.flow_cc lists congestion controls, one per flow, e.g. [\"bbr\", \"reno\"]")
    exchange = {key: value if key in ("send", "nagle", "flow_cc")
                else _number(value, rng, f"{where}: exchange.{key}", 1 << 31) for key, value in exchange.items()}
    expect = raw.get("expect", {})
    if not isinstance(expect, dict):
        raise LabError(f"{where}: [expect] is a table of checks")
    by_cc = {key: value for key, value in expect.items() if isinstance(value, dict)}
    plain = {key: value for key, value in expect.items() if not isinstance(value, dict)}
    for table in (plain, *by_cc.values()):
        unknown = set(table) - set(CHECKS)
        if unknown:
            raise LabError(f"{where}: unknown expectation {sorted(unknown)[0]!r}: the checks are {', '.join(CHECKS)}")
    cc = raw.get("cc")
    if cc is not None and not (isinstance(cc, str) and _CC.fullmatch(cc)):
        raise LabError(f"{where}: cc names a congestion control, e.g. cc = \"reno\"")
    return Scenario(name, seed, str(raw.get("title", name)), str(raw.get("lesson", "")).strip(), exchange,
                    _direction(raw.get("to_client"), rng, f"{where}: to_client"),
                    _direction(raw.get("to_server"), rng, f"{where}: to_server"), plain, by_cc, cc)


def _number(value: Any, rng: random.Random, what: str, high: float) -> float | int:
    """A number, or one the seed picks from a [low, high] range."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        low, top = value
        value = rng.randint(low, top) if isinstance(low, int) and isinstance(top, int) else round(rng.uniform(low, top), 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise LabError(f"{what} must be a number from 0 to {high:g}, or a range [low, high]")
    return value


def _direction(raw: Any, rng: random.Random, where: str) -> Direction | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - set(LINK_NUMBERS) - {"events"}:
        raise LabError(f"{where} takes {', '.join(LINK_NUMBERS)} and events")
    numbers = {key: _number(value, rng, f"{where}.{key}", LINK_NUMBERS[key]) for key, value in raw.items()
               if key != "events"}
    events = []
    for text in raw.get("events", []):
        if not isinstance(text, str):
            raise LabError(f"{where}.events: each event is a string, e.g. \"drop:data:5\"")
        chosen = _RANGE.sub(lambda found: str(rng.randint(int(found[1]), int(found[2]))), text)
        try:
            events.append(str(Event.parse(chosen)))
        except ValueError as exc:
            raise LabError(f"{where}: {exc}") from None
    if "queue_packets" in numbers:
        numbers["queue_packets"] = max(int(numbers["queue_packets"]), 1)
    return Direction(**numbers, events=tuple(events))  # type: ignore[arg-type]   # each number checked above


def made_by(file_name: str) -> tuple[str, int | None] | None:
    """(bundled scenario, seed) a capture's name says made it: NAME-CC-seedN.pcapng (or an older
    NAME-seedN), -2, -3 for later runs, or a bundled capture named NAME (no seed); else None."""
    stem = re.sub(r"\.(pcapng|pcap)$", "", file_name)
    for name in sorted(bundled(), key=len, reverse=True):
        if stem == name:
            return name, None
        rest = re.fullmatch(rf"{re.escape(name)}(?:-{_CC.pattern})?-seed(\d+)(?:-\d+)?", stem)
        if rest:
            return name, int(rest[1])
    return None


def free_name(scenario: Scenario, cc: str | None = None) -> str:
    """NAME-CC-seedN (slow-start-reno-seed1), or -2, -3, ... where an earlier run holds that
    name: a reno run and a bbr run of one scenario are told apart by their names."""
    base = f"{scenario.name}-{cc}-seed{scenario.seed}" if cc else f"{scenario.name}-seed{scenario.seed}"
    for number in range(1, 1000):
        name = base if number == 1 else f"{base}-{number}"
        if not any((CAPTURES_DIR / f"{name}{suffix}").exists() for suffix in (".pcapng", ".pcap", ".kernel.jsonl")):
            return name
    raise LabError(f"captures/ holds 999 runs of {base}: move some away")
