"""The room's broker: the one part of a lab room that holds Docker, acting for each student on
their own lab only.

It listens on the room's networks (each student's JupyterLab reaches it, and nothing else does).
A request is one JSON line (lab.host.room.requests says what it may hold); the student is the one
their token names (lab.host.room.tokens), and their lab is the roster's lab for them. A task runs
as ``invoke TASK ...`` would on a laptop, in a process of its own whose output streams back line
by line (through a terminal, for chat and send --step, so the student types into it); the captures
it made are signed (lab.host.room.signatures) and sent back into the student's workspace.

The answer is JSON lines too: ``{"out": TEXT}`` as the task prints, ``{"file": NAME, "data":
BASE64, "last": BOOL}`` for each file delivered, and last ``{"exit": CODE}`` or ``{"refused":
ONE LINE}``. Each request, refused or run, is one line of the broker's log.

    python -m lab.host.room.broker          (the room's broker container runs this)
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import collections
import contextlib
import dataclasses
import fcntl
import json
import os
import pty
import signal
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any, Iterator

from lab.host.room import requests, signatures, tokens
from lab.host.room.requests import Refused
from lab.inspect.kernel import kernel_file_of

PORT = 7077
CHUNK = 256 << 10
GLOBAL_AT_ONCE = 8                       # tasks running at once for the whole room (a 2-core host's share)
CAPTURE_SUFFIXES = (".pcapng", ".pcap")


@dataclasses.dataclass
class StudentState:
    """What the broker remembers of one student between requests: to bound them."""

    times: collections.deque = dataclasses.field(default_factory=collections.deque)
    running: int = 0
    capturing: int = 0


class Broker:
    def __init__(self, room: str, key: bytes, labs: dict[str, str], data: Path, course: Path | None = None,
                 project: Path = Path("/opt/tcplab")) -> None:
        self.room, self.key, self.labs, self.data, self.course, self.project = room, key, labs, data, course, project
        self.students: dict[str, StudentState] = collections.defaultdict(StudentState)
        self.room_slots = asyncio.Semaphore(GLOBAL_AT_ONCE)
        self.log_path = data / "broker.log"

    # --- one connection -------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        began, student, what, outcome = time.monotonic(), None, "?", "refused"
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            if len(line) > requests.MAX_REQUEST_BYTES or not line.endswith(b"\n"):
                raise Refused("the request is too long or incomplete")
            request = json.loads(line)
            if not isinstance(request, dict):
                raise Refused("a request is a JSON object")
            student = tokens.student_of(self.key, request.get("token"))
            if student is None or student not in self.labs:
                student = None
                raise Refused("the room does not know this token: log in to the room again")
            what = str(request.get("task") or request.get("ask") or "?")[:30]
            with self.admitted(student, what in requests.MAKES_CAPTURES):
                if "ask" in request:
                    args = requests.check_ask(request["ask"], request)
                    answer = await asyncio.to_thread(self.ask, student, request["ask"], args)
                    await self.send(writer, answer)
                    outcome = "answered"
                else:
                    words = requests.words_of(str(request.get("task") or ""), request.get("options", {}))
                    code = await self.run_task(student, words, request, reader, writer)
                    outcome = f"exit {code}"
        except Refused as refusal:
            outcome = f"refused: {refusal}"
            await self.send(writer, {"refused": str(refusal)})
        except (ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as error:
            outcome = f"bad request: {type(error).__name__}"
            await self.send(writer, {"refused": "not a request the room understands"})
        except Exception as error:        # noqa: B902 - one request's failure is its line; the broker goes on
            outcome = f"failed: {type(error).__name__}: {error}"
            await self.send(writer, {"refused": f"the room could not run it ({type(error).__name__}): "
                                                "tell your instructor (room status, the broker's log)"})
        finally:
            self.log(student, what, outcome, time.monotonic() - began)
            writer.close()

    @contextlib.contextmanager
    def admitted(self, student: str, capturing: bool) -> Iterator[None]:
        """The student's bounds, checked before anything runs (requests a minute, at once, captures at
        once), and their request counted as running until it ends."""
        state, now = self.students[student], time.monotonic()
        while state.times and now - state.times[0] > 60:
            state.times.popleft()
        if len(state.times) >= requests.REQUESTS_PER_MINUTE:
            raise Refused(f"the room takes {requests.REQUESTS_PER_MINUTE} requests a minute from each student: "
                          "wait a moment and try again")
        if state.running >= requests.AT_ONCE:
            raise Refused(f"you have {state.running} requests running: wait for one to end")
        if capturing and state.capturing >= requests.CAPTURES_AT_ONCE:
            raise Refused("a capture of yours is running: wait for it to end")
        state.times.append(now)
        state.running += 1
        state.capturing += capturing
        try:
            yield
        finally:
            state.running -= 1
            state.capturing -= capturing

    # --- asks and tasks -----------------------------------------------------------------

    def ask(self, student: str, ask: str, args: dict[str, str]) -> dict[str, Any]:
        from lab.host import live

        lab = self.labs[student]
        if ask == "is-up":
            return {"up": live.lab_is_up(lab)}
        if ask == "craft":
            return {"output": live.craft(args["what"], args["line"], lab, echo=False)}
        return {"output": live.in_client(args["script"], lab, echo=False)}

    def folder_of(self, student: str) -> Path:
        """The student's folder on the broker: their captures and their variant (as ``invoke student`` set it)."""
        return self.data / "students" / self.labs[student]

    def environment(self, student: str, columns: int) -> dict[str, str]:
        folder = self.folder_of(student)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("TCPLAB_ROOM", "INVOKE_"))}
        env.update(INVOKE_LAB_NAME=self.labs[student], TCPLAB_CAPTURES=str(folder / "captures"),
                   TCPLAB_SUBMISSIONS=str(folder / "submissions"), COLUMNS=str(columns), PYTHONUNBUFFERED="1")
        return env

    async def invoke(self, words: list[str], env: dict[str, str], tty: bool, columns: int):
        """``invoke WORDS`` in a process of its own (its own session, so the whole group can be stopped);
        and the terminal's side the broker reads and writes, when ``tty``."""
        argv = [sys.executable, "-m", "invoke", "--search-root", str(self.project), *words]
        if not tty:
            process = await asyncio.create_subprocess_exec(*argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                           stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            return process, None
        main, other = pty.openpty()
        fcntl.ioctl(other, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = {**env, "TERM": "xterm-256color"}
        process = await asyncio.create_subprocess_exec(*argv, env=env, stdin=other, stdout=other, stderr=other,
                                                       start_new_session=True, preexec_fn=_terminal_is_its_own)
        os.close(other)
        return process, main

    async def set_student(self, student: str) -> None:
        """The student's variant set once in their folder, as ``invoke student`` sets it on a laptop."""
        folder = self.folder_of(student)
        (folder / "captures").mkdir(parents=True, exist_ok=True)
        if self.course is None or (folder / "submissions" / "student.toml").is_file():
            return
        process, _ = await self.invoke(["student", student, "--course", str(self.course)],
                                       self.environment(student, 80), False, 80)
        await process.communicate()

    async def run_task(self, student: str, words: list[str], request: dict, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> int:
        columns = request.get("columns")
        columns = columns if isinstance(columns, int) and 40 <= columns <= 300 else 80
        tty = words[0] == "chat" or bool(request.get("tty"))      # a terminal there: the laptop's output, in colour
        if self.room_slots.locked():
            await self.send(writer, {"out": "the room is busy: your request waits its turn\n"})
        async with self.room_slots:
            await self.set_student(student)
            began = time.time_ns()
            process, terminal = await self.invoke(words, self.environment(student, columns), tty, columns)
            typing = asyncio.create_task(self.watch(reader, terminal, process))
            try:
                await asyncio.wait_for(self.relay(process, terminal, writer, self.folder_of(student) / "captures"),
                                       requests.TASK_SECONDS)
                code = await process.wait()
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                code = await process.wait()
                await self.send(writer, {"out": f"\nstopped after {requests.TASK_SECONDS} s, the room's limit "
                                                "for one task\n"})
            finally:
                typing.cancel()
                if terminal is not None:
                    os.close(terminal)
            await self.deliver(student, words, began, writer)
            await self.send(writer, {"exit": code})
            return code

    async def relay(self, process, terminal: int | None, writer: asyncio.StreamWriter, folder: Path) -> None:
        """The task's output to the student as it comes, the broker's folder for them said as the
        student's own ``captures/`` (what a laptop prints)."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        mine, theirs = f"{folder}/", "captures/"
        held = ""
        loop = asyncio.get_running_loop()
        while True:
            if terminal is None:
                chunk = await process.stdout.read(4096)
            else:
                try:
                    chunk = await loop.run_in_executor(None, os.read, terminal, 4096)
                except OSError:                        # the terminal closes when the task ends
                    chunk = b""
            text = (held + decoder.decode(chunk, final=not chunk)).replace(mine, theirs)
            keep = _start_of(mine, text) if chunk else 0          # a path cut in two by a read waits for its end
            text, held = text[:len(text) - keep], text[len(text) - keep:]
            if text:
                await self.send(writer, {"out": text})
            if not chunk:
                break

    async def watch(self, reader: asyncio.StreamReader, terminal: int | None, process) -> None:
        """What the student types (``{"in": TEXT}`` lines) into the task's terminal, bounded; and when
        they go (Ctrl-C, a closed notebook), the task is interrupted as Ctrl-C would on a laptop."""
        total = 0
        while True:
            try:
                line = await reader.readline()
                text = json.loads(line).get("in", "") if line else None
            except (ValueError, AttributeError, ConnectionError):
                text = None
            if text is None:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGINT)
                return
            data = str(text).encode()[:max(0, requests.MAX_INPUT_BYTES - total)]
            total += len(data)
            if terminal is not None and data:
                os.write(terminal, data)

    async def deliver(self, student: str, words: list[str], began_ns: int, writer: asyncio.StreamWriter) -> None:
        """The captures the task made (and their kernel files), signed, into the student's workspace."""
        captures = self.folder_of(student) / "captures"
        made = sorted(path for path in captures.iterdir() if path.suffix in CAPTURE_SUFFIXES
                      and path.is_file() and not path.is_symlink() and path.stat().st_mtime_ns >= began_ns)
        scenario = next((word.split("=", 1)[1] for word in words if word.startswith("--name=")), None) \
            if words[0] == "scenario" else None
        seed = next((word.split("=", 1)[1] for word in words if word.startswith("--seed=")), None)
        for capture in made:
            kernel = kernel_file_of(capture)
            files = [capture, *([kernel] if kernel is not None else [])]
            if any(path.stat().st_size > requests.MAX_FILE_BYTES for path in files):
                await self.send(writer, {"out": f"{capture.name} is larger than the room delivers "
                                                f"({requests.MAX_FILE_BYTES >> 20} MB): capture less\n"})
                continue
            signature = signatures.sign(self.key, self.room, student, files, scenario,
                                        int(seed) if seed and seed.isdigit() else None)
            for path in [*files, signature]:
                await self.send_file(path, writer)

    async def send_file(self, path: Path, writer: asyncio.StreamWriter) -> None:
        with path.open("rb") as stream:
            while True:
                data = stream.read(CHUNK)
                last = len(data) < CHUNK
                await self.send(writer, {"file": path.name, "data": base64.b64encode(data).decode(), "last": last})
                if last:
                    return

    # --- plumbing ---------------------------------------------------------------------

    @staticmethod
    async def send(writer: asyncio.StreamWriter, message: dict) -> None:
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass

    def log(self, student: str | None, what: str, outcome: str, seconds: float) -> None:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "student": student, "request": what,
                 "outcome": outcome[:200], "seconds": round(seconds, 3)}
        line = json.dumps(entry)
        print(line, flush=True)
        with self.log_path.open("a") as log:
            log.write(line + "\n")

    async def serve(self, host: str = "0.0.0.0", port: int = PORT) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        server = await asyncio.start_server(self.handle, host, port, limit=requests.MAX_REQUEST_BYTES + 2)
        print(f"broker of room {self.room}: listening on {port} for {len(self.labs)} students", flush=True)
        async with server:
            await server.serve_forever()


def _terminal_is_its_own() -> None:
    """In the task's process, before it runs: its terminal becomes its controlling terminal, as a login's
    is. invoke reads what the student types only in a foreground process of its terminal, and Ctrl-C
    there is SIGINT only to that terminal's foreground."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _start_of(word: str, text: str) -> int:
    """The length of the longest end of ``text`` that begins ``word`` (0 if none)."""
    for length in range(min(len(word) - 1, len(text)), 0, -1):
        if word.startswith(text[-length:]):
            return length
    return 0


def from_environment() -> Broker:
    """The broker as the room's container starts it: its room, key, roster and course from the environment
    (TCPLAB_ROOM_*), written by lab.host.room.lifecycle."""
    data = Path(os.environ.get("TCPLAB_ROOM_DATA", "/srv/room"))
    course = None
    if os.environ.get("TCPLAB_ROOM_COURSE"):
        data.mkdir(parents=True, exist_ok=True)
        course = data / "course.toml"
        course.write_text(json.loads(os.environ["TCPLAB_ROOM_COURSE"]))
    return Broker(os.environ["TCPLAB_ROOM"], bytes.fromhex(os.environ["TCPLAB_ROOM_KEY"]),
                  json.loads(os.environ["TCPLAB_ROOM_LABS"]), data, course)


if __name__ == "__main__":
    asyncio.run(from_environment().serve())
