"""The kernel's own view during a capture: samplers in the server's and the client's namespaces.

`invoke capture --kernel` (and every scenario) starts one sampler container
(lab.inside.sampler, the "sampler" role) joined to each host's namespace before
the exchange runs, and stops them after it. Each writes JSON lines to a file of
its own in captures/ (made new, never through a link: lab.host.capture.safe_files); at
the end the two become ``captures/NAME.kernel.jsonl``, each sample marked with
the host it came from, in time order. The samples are stamped with the wall
clock, the clock the capture's packets carry, so lab.inspect lines them up.

What the sampler costs and achieves is measured, not assumed: its CPU seconds
and the interval it really kept while a lab socket existed (the median time
between its samples), both from its own report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import os
import re
import threading
from pathlib import Path

from lab.errors import LabError
from lab.host.capture.safe_files import (
    KERNEL_PART_SUFFIX,
    give_to_invoking_user,
    new_private_file,
    place,
    remove_if_regular,
)
from lab.host.engines.lab_engines import Engines
from lab.host.settings import PART_LABEL
from lab.host.state import is_ours
from lab.host.topology import Topology
from lab.inspect.kernel import HOSTS, KERNEL_SUFFIX

READY = "tcplab-sampler-ready"
READY_TIMEOUT_S = 20.0
_REPORT = re.compile(r"(\d+) samples written of (\d+) taken, every ([\d.]+) ms .*?, ([\d.]+) s of CPU")


@dataclasses.dataclass
class KernelSummary:
    """What the samplers recorded, and at what cost."""

    path: Path
    changes: int           # samples kept: where something changed
    taken: int             # samples taken
    cpu_s: float
    interval_ms: float | None

    def __str__(self) -> str:
        interval = f"every {self.interval_ms:.2f} ms (median)" if self.interval_ms else "no connection seen"
        return (f"{self.path.name}: {self.taken} kernel samples taken in the server's and the client's "
                f"namespaces, {interval}, {self.changes} kept (the changes); {self.cpu_s:.2f} s of the samplers' CPU")


class Sampler:
    """One sampler container, its output file and its stderr."""

    def __init__(self, engines: Engines, topology: Topology, host: str, folder: Path, stem: str) -> None:
        self.docker, self.host = engines.of(host), host
        self.container = topology.container("sampler", host)
        fd, self.part = new_private_file(folder, f".{stem}.{host}.", KERNEL_PART_SUFFIX)
        with os.fdopen(fd, "wb") as sink:          # the label names the file (its name names its owner)
            self.proc = engines.popen(topology.launch("sampler", joins=host, instance=host,
                                                      labels={PART_LABEL: self.part.name}), sink, str(self.part))
        self.ready = threading.Event()
        self.report = ""
        self.reader = threading.Thread(target=self._read_stderr, name=f"sampler-{host}", daemon=True)
        self.reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None           # stderr=PIPE
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line == READY:
                self.ready.set()
            elif line:
                self.report = line
        self.ready.set()

    def stop(self) -> None:
        self.docker.interrupt(self.container)
        self.docker.wait_or_remove(self.container, self.proc)
        self.reader.join(5)

    def counts(self) -> tuple[int, float, float]:
        """(samples taken, median interval in ms, CPU seconds), from the sampler's last words."""
        found = _REPORT.search(self.report)
        return (int(found[2]), float(found[3]), float(found[4])) if found else (0, 0.0, 0.0)


class KernelView:
    """The samplers of one capture: start before the exchange, ``finish`` after it."""

    def __init__(self, engines: Engines, topology: Topology, final: Path) -> None:
        self.final = final.with_name(final.name.removesuffix(".pcapng") + KERNEL_SUFFIX)
        self.samplers = [Sampler(engines, topology, host, final.parent, final.stem) for host in HOSTS]

    def wait_ready(self) -> bool:
        """True once both samplers sample (they are then in the namespaces, before any packet of the run)."""
        return all(sampler.ready.wait(READY_TIMEOUT_S) and sampler.proc.poll() is None for sampler in self.samplers)

    def complaint(self) -> str:
        return next((s.report for s in self.samplers if s.report), "no message")

    def finish(self) -> KernelSummary | None:
        """Stop the samplers; merge their files into the kernel file (None if nothing was sampled).

        Each sampler wrote in time order, so the two files are merged as streams
        (heapq.merge): a capture of an hour costs no more memory than one of a second.
        """
        for sampler in self.samplers:
            sampler.stop()
        fd, temporary = new_private_file(self.final.parent, f".{self.final.stem}.", ".tmp")
        written = 0
        with os.fdopen(fd, "w") as out, contextlib.ExitStack() as parts:
            streams = [samples_of(parts.enter_context(open(sampler.part, "rb")), sampler.host)
                       for sampler in self.samplers]
            for sample in heapq.merge(*streams, key=lambda sample: sample["t"]):
                out.write(json.dumps(sample, separators=(",", ":")) + "\n")
                written += 1
            give_to_invoking_user(out.fileno())
        for sampler in self.samplers:
            remove_if_regular(sampler.part)
        if not written:
            remove_if_regular(temporary)
            return None
        self.final = place(temporary, self.final)
        counts = [sampler.counts() for sampler in self.samplers]
        intervals = [interval for _, interval, _ in counts if interval]
        return KernelSummary(self.final, written, sum(taken for taken, _, _ in counts),
                             sum(cpu for _, _, cpu in counts), max(intervals) if intervals else None)

    def abandon(self) -> None:
        """Stop the samplers and keep nothing (the capture itself was not kept)."""
        for sampler in self.samplers:
            sampler.stop()
            remove_if_regular(sampler.part)


def samples_of(part, host: str):
    """The samples of one sampler's file, each marked with its host (a line cut short by the stop is left out)."""
    for line in part:
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if isinstance(sample, dict) and isinstance(sample.get("t"), int):
            yield {"host": host, **sample}


def remove_leftovers(engines: Engines, topology: Topology) -> None:
    """Samplers a killed `invoke capture` left running, and their files; a container of that name not
    ours is refused (`down` removes them too, as it removes a capture's)."""
    for host in HOSTS:
        docker = engines.of(host)
        for found in docker.inspect([topology.container("sampler", host)], kind="container"):
            if not is_ours(found, topology):
                raise LabError(f"a container named {found.get('Name', '').lstrip('/')!r} exists but was not made "
                               f"by lab {topology.lab.name!r}: rename or remove it yourself, or use --lab OTHER")
            docker.run(["rm", "--force", found["Id"]], quiet=True, check=False)
