"""A class end to end, on a real engine: students run a scenario, submit, are graded; many labs
come up and go down together, and none reaches another."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from lab.course.variant import read_course
from lab.paths import CAPTURES_DIR, PROJECT_ROOT
from tests.helpers import docker_json, invoke, ok

LAB, GROUP = "nlt-course", "nlt-cls"
STUDENTS = ("alice", "bob", "carol", "dave")

ANSWER = textwrap.dedent("""
    import sys
    from lab.teach.dynamics import Dynamics
    dyn = Dynamics(sys.argv[1])
    dyn.check("initial_cwnd", dyn.reveal("initial_cwnd"))
    dyn.check("retransmitted", dyn.reveal("retransmitted"))
""")


@pytest.mark.docker
def test_students_run_a_scenario_submit_and_are_graded_and_a_swapped_capture_and_a_forged_kernel_file_caught(
        tmp_path):
    """alice and bob honest; carol hands in bob's capture; dave his own, with its kernel file's
    rto_us edited (sed on rto_us once turned a wrong answer right)."""
    ok(invoke("course", "net101", "--folder", str(tmp_path)))
    (tmp_path / "roster.csv").write_text("id,name\n" + "".join(f"{s},{s.title()}\n" for s in STUDENTS))
    made = {}
    try:
        for student in ("alice", "bob", "dave"):
            env = {"TCPLAB_SUBMISSIONS": str(tmp_path / student)}
            said = ok(invoke("student", student, "--course", str(tmp_path / "net101.course.toml"), env=env))
            assert f"you are {student}" in said
            seed = read_course(tmp_path / "net101.course.toml").variant(student).seed
            ok(invoke("scenario", "fast-retransmit", "--lab", LAB, env=env))       # the student's seed, by default
            made[student] = max(CAPTURES_DIR.glob(f"fast-retransmit-*seed{seed}*.pcapng"), key=lambda p: p.stat().st_mtime)
        kernel = made["dave"].with_name(made["dave"].stem + ".kernel.jsonl")
        samples = [json.loads(line) for line in kernel.read_text().splitlines()]
        for sample in samples:
            if sample.get("state") == "ESTABLISHED" and sample.get("rto_us"):
                sample["rto_us"] = sample["rto_us"] * 3 // 2
        kernel.write_text("".join(json.dumps(sample) + "\n" for sample in samples))
        for student, capture in (("alice", made["alice"]), ("bob", made["bob"]), ("carol", made["bob"]),
                                 ("dave", made["dave"])):
            env = {"TCPLAB_SUBMISSIONS": str(tmp_path / student)}
            if student == "carol":
                ok(invoke("student", student, "--course", str(tmp_path / "net101.course.toml"), env=env))
            answered = subprocess.run([sys.executable, "-c", ANSWER, str(capture)], cwd=PROJECT_ROOT, text=True,
                                      capture_output=True, env={**os.environ, **env})
            assert answered.returncode == 0 and "✔ initial_cwnd: right" in answered.stdout, answered.stderr
            ok(invoke("submit", env=env))
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        for student in STUDENTS:                     # as an LMS gives them: a folder per student
            (inbox / student).mkdir()
            for archive in (tmp_path / student).glob("*.zip"):
                archive.rename(inbox / student / archive.name)
        out = ok(invoke("grade", str(inbox), "--roster", str(tmp_path / "roster.csv"),
                        "--secret", str(tmp_path / "net101.secret"), "--out", str(tmp_path / "grades"),
                        env={"COLUMNS": "80"}))
        assert "4 of 4 archives graded" in " ".join(out.split())
        assert max(len(line) for line in out.splitlines()) <= 80, out         # the summary, as a terminal shows it
        rows = {(row["student"], row["exercise"]): row for row in csv.DictReader(open(tmp_path / "grades/grades.csv"))}
        for honest in (("alice", "initial_cwnd"), ("bob", "retransmitted")):
            assert rows[honest]["correct"] == "1", rows[honest]["feedback"]
        caught = rows[("carol", "initial_cwnd")]
        assert caught["correct"] == "0" and "is not this student's" in caught["feedback"] and "(bob)" in caught["feedback"]
        forged = rows[("dave", "initial_cwnd")]
        assert forged["correct"] == "0" and "kernel file beside" in forged["feedback"] and "RTO" in forged["feedback"]
        report = (tmp_path / "grades" / "report.txt").read_text()
        assert "copy: bob and carol" in report and "carry bob's marks only" in report.replace("\n      ", " ")
        canvas = list(csv.reader(open(tmp_path / "grades" / "canvas.csv")))
        assert [row[3] for row in canvas[1:]] == list(STUDENTS) and canvas[1][5] == "2" and canvas[4][5] == "0"
    finally:
        for capture in made.values():
            capture.unlink(missing_ok=True)
            capture.with_name(capture.stem + ".kernel.jsonl").unlink(missing_ok=True)
        invoke("down", "--lab", LAB)


def class_resources() -> tuple[list, list, list]:
    """The class's containers and networks (by its label) and its labs' image tags."""
    def listed(*args: str) -> list[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60).stdout.split()

    group = f"label=org.tcplab.group={GROUP}"
    tags = [tag for tag in listed("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
            if tag.startswith(f"tcplab/lab:{GROUP}-")]
    return listed("ps", "--all", "-q", "--filter", group), listed("network", "ls", "-q", "--filter", group), tags


@pytest.mark.docker
def test_class_up_brings_five_isolated_labs_and_class_down_leaves_nothing():
    try:
        out = ok(invoke("class", "up", "--count", "5", "--group", GROUP, timeout=900))
        assert f"class {GROUP}: 5 labs up" in out
        status = ok(invoke("class", "status", "--group", GROUP, env={"COLUMNS": "80"}))
        assert all(f"{GROUP}-0{n}" in status for n in range(1, 6)) and "NO" not in status
        assert max(len(line) for line in status.splitlines()) <= 80 and "…" not in status, status
        assert "client: running, server: running" in " ".join(status.replace("│", " ").split())
        answer = subprocess.run(["docker", "exec", f"{GROUP}-02-client", "sh", "-c",
                                 "echo 'ECHO mine' | nc -N -w 2 server 7070"], capture_output=True, text=True)
        assert answer.stdout.strip() == "OK mine"                  # each lab works as a lab alone does
        other = docker_json("inspect", f"{GROUP}-03-server")[0]["NetworkSettings"]["Networks"]
        other_ip = next(iter(other.values()))["IPAddress"]
        reach = subprocess.run(["docker", "exec", f"{GROUP}-02-client", "nc", "-z", "-w", "2", other_ip, "7070"],
                               capture_output=True, text=True)
        assert reach.returncode != 0                               # lab 02 cannot reach lab 03's server
        down = ok(invoke("class", "down", "--group", GROUP))
        assert "removed 5 labs" in down
        assert class_resources() == ([], [], [])
    finally:
        invoke("class", "down", "--group", GROUP)
