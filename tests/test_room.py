"""A lab room on the real engine: a JupyterHub, three students' JupyterLabs, the broker, their labs.

Two students log in through the hub's HTTP API and one in a real browser (Debian's chromium,
headless, through selenium and Debian's chromium-driver); each starts JupyterLab and runs notebook
01's live capture cell, which brings their lab up through the broker and captures it; the capture
lands signed in their workspace, and invoke grade accepts it, and rejects it altered. A request for
another student's lab is refused; a student's JupyterLab reaches the hub and the broker and
nothing else; room down leaves nothing of the room.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import json
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from lab.host.room import plan, signatures
from lab.host.room.lifecycle import ROOMS
from tests.helpers import docker_json, invoke
from tests.room_client import Student

pytestmark = pytest.mark.docker

ROOM = "nlt-room"
STUDENTS = ("alice", "bob", "carol")
LIVE_CELL = "live-capture"
NOTEBOOK_01 = "notebooks/01-handshake.ipynb"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("room")
    (folder / "roster.txt").write_text("\n".join(STUDENTS) + "\n")
    made = invoke("course", "nlt-course", "--room", "--folder", str(folder))
    assert made.returncode == 0, made.stderr
    port = free_port()
    began = time.monotonic()
    up = invoke("room", "up", "--roster", str(folder / "roster.txt"), "--secret", str(folder / "nlt-course.secret"),
                "--name", ROOM, "--port", str(port), timeout=1200)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    passwords = {row["login"]: row["password"] for row in csv.DictReader(open(ROOMS / ROOM / "passwords.csv"))}
    yield {"base": f"http://127.0.0.1:{port}", "passwords": passwords, "folder": folder,
           "up_seconds": time.monotonic() - began, "up": up.stdout}
    invoke("room", "down", "--name", ROOM, "--work", timeout=600)
    subprocess.run(["rm", "-rf", str(ROOMS / ROOM)], check=False)


def logged_in(room, login: str) -> Student:
    student = Student(room["base"], login, room["passwords"][login])
    assert student.logged_in, f"{login} could not log in"
    return student


def live_cell_code() -> str:
    """Notebook 01's live capture cell, as the student runs it with live = True."""
    book = json.loads((Path(__file__).parent.parent / NOTEBOOK_01).read_text())
    cell = next(c for c in book["cells"] if LIVE_CELL in c["metadata"].get("tags", []))
    code = "".join(cell["source"])
    assert "live = False" in code
    return "import os\nos.chdir('/home/student/notebooks')\npcap = None\n" + code.replace("live = False", "live = True")


def workspace_file(student: Student, path: str) -> bytes:
    """A file of the student's workspace, through JupyterLab's contents API."""
    answer = student.session.get(student.api(f"contents/{path}"), params={"content": 1, "format": "base64",
                                                                          "type": "file"}, timeout=60)
    assert answer.ok, (path, answer.status_code)
    return base64.b64decode(answer.json()["content"])


def test_the_hub_answers_and_no_student_has_docker(room):
    assert "room 'nlt-room' is up" in room["up"]
    assert not Student(room["base"], "alice", "wrong password").logged_in
    assert not Student(room["base"], "mallory", room["passwords"]["alice"]).logged_in


@pytest.fixture(scope="module")
def alice(room):
    student = logged_in(room, "alice")
    student.start_jupyterlab()
    return student


@pytest.fixture(scope="module")
def bob(room):
    student = logged_in(room, "bob")
    student.start_jupyterlab()
    return student


def test_two_students_capture_their_own_labs_and_get_signed_captures(room, alice, bob):
    course_key = _course_key(room)
    made = {}
    for student in (alice, bob):
        out, errors = student.run(live_cell_code() + "\nprint('CAPTURED', pcap)")
        assert errors == [], errors
        assert f"lab '{ROOM}-{student.login}' is up" in out
        name = captured(out)
        assert f"*** captures/{name}:" in out                           # the laptop's words, not the broker's
        files = signed_capture(student, name)
        assert signatures.problem(course_key, name, files, student.login) is None
        assert json.loads(files[name + ".sig"])["student"] == student.login
        made[student.login] = files[name]
    assert made["alice"] != made["bob"]


def captured(out: str) -> str:
    """The capture's name, from the live cell's ``print('CAPTURED', pcap)``."""
    line = next(line for line in out.splitlines() if line.startswith("CAPTURED /home/student/captures/"))
    return line.rsplit("/", 1)[1]


def signed_capture(student: Student, name: str) -> dict[str, bytes]:
    return {file: workspace_file(student, f"captures/{file}") for file in (name, name + ".sig")}


def _course_key(room) -> bytes:
    from lab.course.variant import read_secret

    return read_secret(room["folder"] / "nlt-course.secret").room_key


def test_a_request_for_another_students_lab_or_with_a_forged_token_is_refused(room, alice, bob):
    out, errors = alice.run("import subprocess\n"
                            "r = subprocess.run(['invoke', 'status', '--lab', 'nlt-room-bob'], capture_output=True, "
                            "text=True)\nprint(r.returncode, r.stdout, r.stderr)")
    assert errors == [] and out.startswith("1 ") and "leave out --lab" in out
    forged = ("import json, os, socket\n"
              "mine = os.environ['TCPLAB_BROKER_TOKEN']\n"
              "host, port = os.environ['TCPLAB_BROKER'].split(':')\n"
              "for token in ['bob:' + mine.split(':')[1], 'bob:' + '0' * 64, mine + 'x']:\n"
              "    with socket.create_connection((host, int(port)), timeout=10) as s:\n"
              "        s.sendall(json.dumps({'token': token, 'task': 'down', 'options': {}}).encode() + b'\\n')\n"
              "        print(s.makefile().readline().strip())\n")
    out, errors = alice.run(forged)
    assert errors == [] and out.count("does not know this token") == 3
    assert docker_json("inspect", f"{ROOM}-bob-server")[0]["State"]["Running"]      # bob's lab is untouched
    out, errors = alice.run("import subprocess\n"
                            "r = subprocess.run(['invoke', 'scenario', '/etc/passwd'], capture_output=True, text=True)\n"
                            "print(r.returncode, r.stderr)")
    assert "scenarios are the bundled ones" in out


def test_the_notebooks_live_cells_reach_the_students_own_lab_through_the_broker(room, alice):
    out, errors = alice.run("from lab.teach import notebook\n"
                            "print('UP', notebook.lab_is_up())\n"
                            "print(notebook.craft('connect'))\n"
                            "notebook.in_client(f\"echo 'ECHO see you' | nc -N server {notebook.lab_port()}\")\n"
                            "print(notebook.in_client('ss -tan'))\n"
                            "try:\n"
                            "    notebook.in_client('cat /etc/passwd')\n"
                            "except Exception as error:\n"
                            "    print('REFUSED', error)")
    assert errors == [], errors
    assert "UP True" in out
    assert "the server answered: 'OK crafted by hand'" in out                  # notebook 05's cell
    assert "TIME-WAIT" in out or "TIME_WAIT" in out                              # notebook 03's sockets
    assert "REFUSED the room refused: in a room, the client runs only the lines the notebooks run" in out


def test_in_jupyterlabs_terminal_the_tasks_and_chat_go_through_the_broker_key_by_key(room, bob):
    """JupyterLab's Terminal tab, as a student types into it: a login shell finds invoke, status names
    their own lab, and chat takes each key there and ends with Ctrl-D, as on a laptop."""
    shown = bob.terminal([
        ("invoke status\r", f"{ROOM}-bob-server"),
        ("invoke chat\r", "Ctrl-D to quit"),
        ("ECHO typed by hand\r", "OK typed by hand"),
        ("\x04", "$ "),
        ("echo CHAT-ENDED-$?\r", "CHAT-ENDED-0"),
    ])
    assert "command not found" not in shown


def test_a_students_jupyterlab_reaches_the_hub_and_the_broker_and_nothing_else(room, alice, bob):
    def address(container: str, network: str) -> str:
        return docker_json("inspect", container)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]

    gateway = docker_json("network", "inspect", plan.student_network(f"{ROOM}-alice"))[0]["IPAM"]["Config"][0]["Gateway"]
    listener = socket.create_server((gateway, 0))                  # the host, on alice's network
    listener.settimeout(20)
    threading.Thread(target=lambda: _accept_once(listener), daemon=True).start()
    targets = {
        "bob's JupyterLab": (address(f"{ROOM}-bob-jupyter", plan.student_network(f"{ROOM}-bob")), 8888),
        "her own lab's server": (address(f"{ROOM}-alice-server", f"{ROOM}-alice-net"), 7070),
        "bob's lab's server": (address(f"{ROOM}-bob-server", f"{ROOM}-bob-net"), 7070),
        "the host": (gateway, listener.getsockname()[1]),
        "the hub": (plan.hub_container(ROOM), 8081),
        "the broker": (plan.broker_container(ROOM), plan.BROKER_PORT),
    }
    code = ("import socket, os\nresults = {}\n"
            f"for what, (host, port) in {targets!r}.items():\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=3).close(); results[what] = 'reached'\n"
            "    except OSError as error:\n"
            "        results[what] = type(error).__name__\n"
            "results['docker socket'] = os.path.exists('/var/run/docker.sock')\n"
            "results['capabilities'] = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
            "results['uid'] = os.getuid()\n"
            "print(results)")
    out, errors = alice.run(code)
    listener.close()
    results = ast.literal_eval(out.strip())          # a dict of strings, bools and an int that the kernel printed
    assert results["the hub"] == "reached" and results["the broker"] == "reached"
    for what in ("bob's JupyterLab", "her own lab's server", "bob's lab's server", "the host"):
        assert results[what] != "reached", what
    assert results["docker socket"] is False and results["capabilities"] == "0000000000000000"
    assert results["uid"] == 1000


def _accept_once(listener: socket.socket) -> None:
    try:
        connection, _ = listener.accept()
        connection.close()
    except OSError:
        pass


def test_the_grader_accepts_the_rooms_capture_and_rejects_it_altered(room, alice, tmp_path):
    out, errors = alice.run(live_cell_code() + "\n"
                            "from lab.teach.exercises import Exercises\n"
                            "ex = Exercises(pcap)\n"
                            "for name in ('syn_sequence_number', 'handshake_rtt_ms'):\n"
                            "    ex.check(name, ex.reveal(name))\n"
                            "import subprocess\n"
                            "r = subprocess.run(['invoke', 'submit'], capture_output=True, text=True)\n"
                            "print('SUBMITTED', r.returncode, r.stdout, r.stderr)\n"
                            "print('CAPTURED', pcap)")
    assert errors == [] and "SUBMITTED 0" in out, out[-800:]
    listing = alice.session.get(alice.api("contents/submissions"), timeout=30).json()["content"]
    made = next(entry["name"] for entry in listing if entry["name"].endswith(".zip"))
    archive = workspace_file(alice, f"submissions/{made}")
    inbox = tmp_path / "inbox"
    (inbox / "alice").mkdir(parents=True)
    (inbox / "alice" / made).write_bytes(archive)
    graded = _grade(room, inbox, tmp_path / "grades")
    assert "2 of 2 answers right; 1 of 1 captures theirs" in graded["alice"], graded
    (inbox / "alice" / made).write_bytes(_altered(archive, captured(out)))
    graded = _grade(room, inbox, tmp_path / "grades2")
    assert "0 of 1 captures theirs" in graded["alice"] and "altered after the room signed it" in graded["alice"]


def _grade(room, inbox: Path, out: Path) -> dict[str, str]:
    """Each student's verdict, as invoke grade prints it (ARCHIVE: VERDICT)."""
    result = invoke("grade", str(inbox), "--roster", str(room["folder"] / "roster.txt"),
                    "--secret", str(room["folder"] / "nlt-course.secret"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return {line.split("/", 1)[0]: line for line in result.stdout.splitlines() if ": graded" in line}


def _altered(archive: bytes, name: str) -> bytes:
    """The archive as a student would forge it: one byte of the capture changed, the manifest made to agree."""
    from lab.course import archive as archives

    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    capture = bytearray(members[name])
    capture[-40] ^= 0x01
    members[name] = bytes(capture)
    manifest = json.loads(members.pop(archives.MANIFEST))
    manifest["files"][name] = archives._describe(members[name])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as forged:
        forged.writestr(archives.MANIFEST, json.dumps(manifest))
        for name, data in members.items():
            forged.writestr(name, data)
    return out.getvalue()


@pytest.mark.needs("chromium", "chromedriver")
def test_a_student_in_a_real_browser_runs_notebook_01_and_sees_the_ladder(room, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    carol = logged_in(room, "carol")                       # her notebook, edited as she would: live = True
    carol.start_jupyterlab()
    book = json.loads(workspace_file(carol, NOTEBOOK_01))
    cell = next(c for c in book["cells"] if LIVE_CELL in c["metadata"].get("tags", []))
    cell["source"] = "".join(cell["source"]).replace("live = False", "live = True")
    carol.session.get(f"{carol.base}/user/carol/lab", timeout=30)
    saved = carol.session.put(carol.api(f"contents/{NOTEBOOK_01}"), json={"type": "notebook", "content": book},
                              headers={"X-XSRFToken": carol.session.cookies.get("_xsrf", path="/user/carol/") or ""},
                              timeout=60)
    assert saved.ok, saved.text
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        wait = WebDriverWait(browser, 120)
        browser.get(f"{room['base']}/hub/login")
        browser.find_element(By.ID, "username_input").send_keys("carol")
        browser.find_element(By.ID, "password_input").send_keys(room["passwords"]["carol"])
        browser.find_element(By.ID, "login_submit").click()
        wait.until(shown.url_contains("/user/carol/lab"))
        browser.get(f"{room['base']}/user/carol/lab/tree/{NOTEBOOK_01}")
        wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
        time.sleep(3)                                         # the kernel starts
        browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").click()
        webdriver.ActionChains(browser).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("c") \
            .key_up(Keys.SHIFT).key_up(Keys.CONTROL).perform()
        palette = wait.until(shown.visibility_of_element_located((By.CSS_SELECTOR, ".lm-CommandPalette-input")))
        palette.send_keys("Run All Cells")
        palette.send_keys(Keys.ENTER)
        WebDriverWait(browser, 300).until(lambda b: "the handshake opens the ladder" in b.page_source
                                          and b.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"))
        ladder = [img for img in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")][0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", ladder)
        time.sleep(1)
        picture = Path(__file__).parent.parent / "logs" / "room-notebook-01.png"
        picture.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(picture))
        page = browser.page_source
    finally:
        browser.quit()
    listing = carol.session.get(carol.api("contents/captures"), timeout=30).json()["content"]
    name = next(entry["name"] for entry in listing if entry["name"].endswith(".pcapng"))
    assert f"studying ../captures/{name}" in page or f"studying /home/student/captures/{name}" in page
    assert signatures.problem(_course_key(room), name, signed_capture(carol, name), "carol") is None


def test_room_status_names_every_student_and_room_down_leaves_nothing(room):
    status = invoke("room", "status", "--name", ROOM)
    assert status.returncode == 0
    for student in STUDENTS:
        assert student in status.stdout
    down = invoke("room", "down", "--name", ROOM, "--work", timeout=600)
    assert down.returncode == 0, down.stderr
    label = f"label={plan.ROOM_LABEL}={ROOM}"
    for listing in (["ps", "--all"], ["network", "ls"], ["volume", "ls"]):
        found = subprocess.run(["docker", *listing, "--filter", label, "-q"], capture_output=True, text=True)
        assert found.stdout.strip() == "", listing
    for student in STUDENTS:
        for part in ("server", "client", "jupyter"):
            assert docker_json("inspect", f"{ROOM}-{student}-{part}") == []
        assert docker_json("network", "inspect", f"{ROOM}-{student}-net") == []


def test_an_idle_jupyterlab_is_stopped_and_the_students_files_stay(tmp_path):
    """A room of one whose JupyterLabs stop after 20 s unused (`--idle 20s`; 60 min by default)."""
    room, student = "nlt-idle", "dana"
    (tmp_path / "roster.txt").write_text(student + "\n")
    port = free_port()
    try:
        up = invoke("room", "up", "--roster", str(tmp_path / "roster.txt"), "--name", room, "--port", str(port),
                    "--idle", "20s", timeout=1200)
        assert up.returncode == 0, up.stdout[-1500:] + up.stderr[-1500:]
        password = next(csv.DictReader(open(ROOMS / room / "passwords.csv")))["password"]
        dana = Student(f"http://127.0.0.1:{port}", student, password)
        dana.start_jupyterlab()
        token = {"X-XSRFToken": dana.session.cookies.get("_xsrf", path=f"/user/{student}/") or ""}
        saved = dana.session.put(dana.api("contents/notes.txt"), headers=token, timeout=30,
                                 json={"type": "file", "format": "text", "content": "my notes"})
        assert saved.ok, saved.text
        began = time.monotonic()
        while dana.session.get(f"{dana.base}/hub/api/users/{student}", headers=dana.xsrf(),
                               timeout=30).json().get("servers"):
            assert time.monotonic() - began < 180, "the idle JupyterLab was not stopped"
            time.sleep(2)
        assert docker_json("inspect", f"{room}-{student}-jupyter") == []
        assert docker_json("volume", "inspect", f"{room}-{student}-work") != []
        dana.start_jupyterlab()
        assert workspace_file(dana, "notes.txt") == b"my notes"
    finally:
        invoke("room", "down", "--name", room, "--work", timeout=600)
        subprocess.run(["rm", "-rf", str(ROOMS / room)], check=False)
