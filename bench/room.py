"""A lab room on this host: how soon students work, and what each costs, next to the same labs without it.

    room up       from `invoke room up` to the hub answering (images already built; --fresh
                  removes the room's images first, to time a first build)
    JupyterLab    from a student's login to their JupyterLab answering, students arriving four
                  at a time; and from `room up` to the first student's JupyterLab
    footprint     with every student's JupyterLab and lab up and idle, docker stats: memory and
                  CPU per student (JupyterLab, a kernel, the lab), the hub and the broker; beside
                  it the same labs from `class up` (the room's labs without the room)
    capturing     every student capturing at once (`invoke capture --send ... --send TIME` in a
                  notebook kernel, through the broker), wall time per capture; beside it the same
                  captures from the host with `invoke capture --lab`, as many at once
    broker        its latency per request (a notebook's "is the lab up?"), idle and while every
                  student captures

    python bench/room.py [--students 10] [--fresh]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import free_port, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))
from tests.room_client import Student  # noqa: E402

ROOM, CLASS = "benchroom", "benchroomref"
AT_ONCE = 4
CAPTURE = "import subprocess, time\nt = time.monotonic()\n" \
          "r = subprocess.run(['invoke', 'capture', '--send', 'ECHO hi', '--send', 'TIME', '--name', " \
          "'bench-' + str(int(time.time() * 1000))], capture_output=True, text=True)\n" \
          "print('SECONDS', r.returncode, time.monotonic() - t)"
ASK = "import time\nfrom lab.teach import notebook\nfor _ in range(10):\n" \
      "    t = time.monotonic(); notebook.lab_is_up(); print('ASK', time.monotonic() - t)"


def invoke(*args: str, check: bool = True) -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, check=check, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.monotonic() - began


def stats(filters: list[str]) -> dict[str, tuple[float, float]]:
    """docker stats of the containers these filters find: name -> (MiB, % of one CPU)."""
    ids = subprocess.run(["docker", "ps", "-q", *[w for f in filters for w in ("--filter", f)]],
                         capture_output=True, text=True).stdout.split()
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}\t{{.CPUPerc}}",
                          *ids], capture_output=True, text=True, check=True).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    found = {}
    for line in out.splitlines():
        name, used, percent = line.split("\t")
        value, unit = re.match(r"([\d.]+)\s*([A-Za-z]+)", used.split("/")[0].strip()).groups()
        found[name] = (float(value) * units[unit], float(percent.rstrip("%")))
    return found


def seconds_in(out: str, word: str) -> list[float]:
    return [float(line.split()[-1]) for line in out.splitlines() if line.startswith(word)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="remove the room's images first (a first build)")
    args = parser.parse_args()
    ids = [f"s{number:02d}" for number in range(1, args.students + 1)]
    folder = Path(tempfile.mkdtemp(prefix="tcplab-bench-room-"))
    (folder / "roster.txt").write_text("\n".join(ids) + "\n")
    invoke("course", "benchcourse", "--room", "--folder", str(folder))
    invoke("room", "down", "--name", ROOM, "--work", check=False)
    invoke("class", "down", "--group", CLASS, check=False)
    if args.fresh:
        subprocess.run(["docker", "rmi", f"tcplab/room:{ROOM}", f"tcplab/room-hub:{ROOM}"], capture_output=True)
    port = free_port()
    up = invoke("room", "up", "--roster", str(folder / "roster.txt"), "--secret", str(folder / "benchcourse.secret"),
                "--name", ROOM, "--port", str(port))
    passwords = {row["login"]: row["password"] for row in csv.DictReader(open(ROOT / "rooms" / ROOM / "passwords.csv"))}
    base = f"http://127.0.0.1:{port}"

    def arrive(login: str) -> tuple[Student, float]:
        began = time.monotonic()
        student = Student(base, login, passwords[login])
        student.start_jupyterlab()
        return student, time.monotonic() - began

    try:
        first_student, first = arrive(ids[0])
        with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
            others = list(pool.map(arrive, ids[1:]))
        arrived = [first_student, *[student for student, _ in others]]
        logins = [first, *[seconds for _, seconds in others]]
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(AT_ONCE) as pool:
            list(pool.map(lambda s: s.run("import subprocess; subprocess.run(['invoke', 'up'])"), arrived))
        labs_up = time.monotonic() - began
        time.sleep(10)
        idle_ask = seconds_in(arrived[0].run(ASK)[0], "ASK")
        room_stats = stats([f"label=org.tcplab.room={ROOM}"])
        lab_stats = stats([f"name={ROOM}-"])
        with concurrent.futures.ThreadPoolExecutor(len(arrived) + 1) as pool:
            asking = pool.submit(lambda: arrived[0].run("import time; time.sleep(1)\n" + ASK)[0])
            captures = list(pool.map(lambda s: s.run(CAPTURE)[0], arrived))
            busy_ask = seconds_in(asking.result(), "ASK")
        room_capture = [t for out in captures for t in seconds_in(out, "SECONDS")]
        failed = sum(1 for out in captures if "SECONDS 0 " not in out)
    finally:
        invoke("room", "down", "--name", ROOM, "--work", check=False)
        shutil.rmtree(ROOT / "rooms" / ROOM, ignore_errors=True)            # its passwords, made for this run
        shutil.rmtree(folder, ignore_errors=True)
    class_up = invoke("class", "up", "--count", str(args.students), "--group", CLASS)
    time.sleep(10)
    class_stats = stats([f"label=org.tcplab.group={CLASS}"])

    def bare_capture(number: int) -> float:
        return invoke("capture", "--lab", f"{CLASS}-{number:02d}", "--send", "ECHO hi", "--send", "TIME",
                      "--name", f"bench-{CLASS}-{number:02d}-{time.time_ns()}")

    with concurrent.futures.ThreadPoolExecutor(args.students) as pool:
        host_capture = list(pool.map(bare_capture, range(1, args.students + 1)))
    invoke("class", "down", "--group", CLASS)
    for leftover in (ROOT / "captures").glob(f"bench-{CLASS}-*"):
        leftover.unlink()
    report(args.students, up, first, logins, labs_up, room_stats, lab_stats, class_up, class_stats, room_capture, host_capture,
           idle_ask, busy_ask, failed, args.fresh)


def report(n, up, first, logins, labs_up, room_stats, lab_stats, class_up, class_stats, room_capture, host_capture, idle_ask,
           busy_ask, failed, fresh) -> None:
    jupyter = {name: v for name, v in room_stats.items() if name.endswith("-jupyter")}
    hub = room_stats.get(f"tcplab-room-{ROOM}-hub", (0, 0))
    broker = room_stats.get(f"tcplab-room-{ROOM}-broker", (0, 0))
    labs = {name: v for name, v in lab_stats.items() if not name.endswith("-jupyter")}
    per_jupyter = sum(m for m, _ in jupyter.values()) / max(1, len(jupyter))
    per_lab = sum(m for m, _ in labs.values()) / n
    per_class_lab = sum(m for m, _ in class_stats.values()) / n
    per_student = per_jupyter + per_lab + (hub[0] + broker[0]) / n
    cpu_student = (sum(c for _, c in jupyter.values()) + sum(c for _, c in labs.values())) / n
    cpu_class = sum(c for _, c in class_stats.values()) / n
    table(f"a room of {n} students on this host ({'first build' if fresh else 'images built'})",
          ["", "room", "reference, same run", "ratio"],
          [["room up to the hub answering (s)", f"{up:.1f}", "", ""],
           ["room up to the first JupyterLab (s)", f"{up + first:.1f}", "", ""],
           ["login to a running JupyterLab, first student (s)", f"{first:.1f}", "", ""],
           [f"login to a running JupyterLab, {AT_ONCE} at once (median, slowest s)",
            f"{statistics.median(logins):.1f}, {max(logins):.1f}", "", ""],
           [f"{n} labs up, {AT_ONCE} at once (s): students' invoke up vs class up", f"{labs_up:.1f}",
            f"{class_up:.1f}", f"{labs_up / class_up:.2f}"],
           ["memory per student idle (MiB): room vs the lab alone", f"{per_student:.0f}", f"{per_class_lab:.0f}",
            f"{per_student / per_class_lab:.1f}"],
           ["  of which JupyterLab (no notebook's kernel running)", f"{per_jupyter:.0f}", "", ""],
           ["  the hub and the broker, shared", f"{hub[0] + broker[0]:.0f}", "", ""],
           ["CPU per student idle (% of a core)", f"{cpu_student:.2f}", f"{cpu_class:.2f}", ""],
           [f"capture, all {n} at once (median s)", f"{statistics.median(room_capture):.2f}",
            f"{statistics.median(host_capture):.2f}",
            f"{statistics.median(room_capture) / statistics.median(host_capture):.2f}"],
           [f"capture, all {n} at once (slowest s)", f"{max(room_capture):.2f}", f"{max(host_capture):.2f}", ""],
           ["captures that failed", str(failed), "", ""],
           ["broker latency, idle (median ms)", f"{statistics.median(idle_ask) * 1000:.0f}", "", ""],
           ["broker latency, all capturing (median ms)", f"{statistics.median(busy_ask) * 1000:.0f}", "", ""]])
    total = 24 * 1024
    print(f"at {per_student:.0f} MiB a student, this host's {total / 1024:.0f} GiB hold about "
          f"{total / per_student:.0f} idle students (memory; the 2 cores decide how many capture at once)")


if __name__ == "__main__":
    main()
