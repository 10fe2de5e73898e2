"""Who may hold the server's connection slots: a share for each source, and room for newcomers.

With one bound for everyone, one client could hold every slot: 512 connections that
each sent one ECHO every 100 s kept all of them, and every other client got ``ERR
busy`` for as long as they liked. So the server keeps two rules, here without any I/O
(the server asks, and closes what it is told to):

* a source (an IP address) holds at most ``per_source`` slots;
* a newcomer that finds the server full, or its own source at its share, is given
  the slot of the connection that has waited longest for its next request: one of its
  own source's if that source is at its share, else one of the source that holds the
  most. Only a connection idle for at least ``min_idle`` seconds is taken, so no
  request in progress is cut; when there is none, the newcomer gets ``ERR busy``.

A well-behaved client's connections are short or busy; an attacker's are idle most of
the time, so they are the ones that make room.
"""

from __future__ import annotations

from typing import Callable, Generic, Hashable, TypeVar

Holder = TypeVar("Holder", bound=Hashable)


class Slots(Generic[Holder]):
    """The slots in use, by source; ``idle_since(holder)`` says since when a holder has waited for
    its next request (None while it is being answered)."""

    def __init__(self, total: int, per_source: int, min_idle: float,
                 idle_since: Callable[[Holder], float | None]) -> None:
        self.total, self.per_source, self.min_idle = total, max(1, min(per_source, total)), min_idle
        self.idle_since = idle_since
        self.by_source: dict[str, dict[Holder, None]] = {}     # insertion-ordered sets
        self.used = 0

    def admit(self, source: str, now: float) -> tuple[bool, Holder | None]:
        """Whether a newcomer from ``source`` gets a slot, and the holder to close to make room for it."""
        own = len(self.by_source.get(source, ()))
        if own < self.per_source and self.used < self.total:
            return True, None
        if own >= self.per_source:
            crowded = source
        else:
            crowded = max(self.by_source, key=lambda holder_source: len(self.by_source[holder_source]))
            if len(self.by_source[crowded]) <= own + 1:      # every source holds about as much: nobody yields
                return False, None
        victim = self.longest_idle(crowded, now)
        return (victim is not None), victim

    def longest_idle(self, source: str, now: float) -> Holder | None:
        """The holder of ``source`` that has waited longest for its next request, if at least ``min_idle``."""
        idle = [(since, order, holder) for order, holder in enumerate(self.by_source.get(source, ()))
                if (since := self.idle_since(holder)) is not None and since <= now - self.min_idle]
        return min(idle)[2] if idle else None

    def add(self, source: str, holder: Holder) -> None:
        self.by_source.setdefault(source, {})[holder] = None
        self.used += 1

    def remove(self, source: str, holder: Holder) -> None:
        held = self.by_source.get(source)
        if held is None or holder not in held:
            return
        del held[holder]
        self.used -= 1
        if not held:
            del self.by_source[source]

    def held_by(self, source: str) -> int:
        return len(self.by_source.get(source, ()))
