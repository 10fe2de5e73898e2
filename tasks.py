"""tcplab's front door: `invoke --list` shows every task, `invoke --help TASK` its options.

Each task is a few lines: it reads its options and calls into the lab package
(lab/host for the lab's containers, lab/inspect for captures), which takes the
invoke Context so it can be tested with MockContext. ``@task`` comes from
lab.host.frontdoor: it turns the lab's errors into one line and an exit code.
Tasks that read captures import their modules when they run: the analysis brings
numpy, which `invoke up` and `invoke --list` need not wait for.
"""

from invoke import Collection

from lab.course.variant import student_tag
from lab.errors import LabError
from lab.host import image, lifecycle
from lab.host import impair as impairments
from lab.host import status as looking
from lab.host.client_runs import chat as chat_with_server
from lab.host.client_runs import send as run_client
from lab.host.engines.docker import Docker
from lab.host.frontdoor import LAB_HELP, help_and_suggestions, lab_of, task
from lab.host.options import bulk_options, client_options, exchange_options, whole_number
from lab.host.settings import DEFAULTS

VERBOSE_HELP = ("show every line of an image build and every docker command whole (default: one line each, "
                "the rest in a log file; INVOKE_LAB_VERBOSE=1 for every task)")


@task(on_engine=True, help={"verbose": VERBOSE_HELP, "lab": LAB_HELP})
def build(c, verbose=False, lab=None):
    """Build the lab's image (on debian:bookworm-slim, or a base made from Debian's packages)."""
    c.config.lab.verbose = verbose or c.config.lab.verbose
    image.build(c, lab_of(c, lab), Docker(c))


@task(on_engine=True, help={"cc": "the TCP congestion control of the server and client (e.g. cubic, reno, bbr: what the kernel "
                  "offers; default: the kernel's own)", "verbose": VERBOSE_HELP, "lab": LAB_HELP})
def up(c, cc=None, verbose=False, lab=None):
    """Start the lab: network, server and client host; returns when the server answers.

    Across hosts (a Docker Swarm): the settings engine, nodes, server_node, client_node and encrypt
    (INVOKE_LAB_ENGINE=swarm INVOKE_LAB_NODES=ssh://me@host1,ssh://me@host2 ...; README, Across hosts).
    """
    c.config.lab.verbose = verbose or c.config.lab.verbose
    lifecycle.up(c, lab_of(c, lab, cc=cc))


@task(
    on_engine=True,
    positional=["message"],
    iterable=["next"],
    help={
        "message": "the request line to send, e.g. 'ECHO hello'",
        "next": "another request line to send on the same connection (repeatable)",
        "udp": "send each request as one UDP datagram",
        "step": "pause before connect, each send and close, saying what goes on the wire",
        "lab": LAB_HELP,
    },
)
def send(c, message, next=None, udp=False, step=False, lab=None):
    """Send requests from a one-shot client container and print the server's replies."""
    run_client(c, lab_of(c, lab), client_options([message, *(next or [])], udp=udp, step=step, tag=student_tag()),
               tty=step)


@task(on_engine=True, positional=["nbytes"], help={"nbytes": "how many bytes to download", "lab": LAB_HELP})
def bulk(c, nbytes, lab=None):
    """Download NBYTES from the server with BULK, check them, and report throughput."""
    run_client(c, lab_of(c, lab), bulk_options(nbytes, student_tag()))


@task(on_engine=True, help={"lab": LAB_HELP})
def chat(c, lab=None):
    """Type requests to the server from an interactive client container (needs a terminal)."""
    chat_with_server(c, lab_of(c, lab))


@task(on_engine=True, help={"lab": LAB_HELP})
def status(c, lab=None):
    """Show the lab's containers: role, IP, MAC, ports, state and active impairments."""
    looking.status(c, lab_of(c, lab))


@task(on_engine=True, help={"role": "server or client (default server)", "follow": "keep printing new lines",
            "tail": "only the last N lines", "lab": LAB_HELP})
def logs(c, role="server", follow=False, tail=None, lab=None):
    """Print a lab container's log (the server logs one line per connection)."""
    looking.logs(c, lab_of(c, lab), role, follow, whole_number(tail, "--tail"))


@task(on_engine=True, help={"lab": LAB_HELP})
def doctor(c, lab=None):
    """Say what this engine and its kernel can do (rootless? limits? netem or the lab's emulator?
    congestion controls, the kernel view, encryption, free subnets) and what to do where something is missing."""
    from lab.host.doctor import report

    report(c, lab_of(c, lab))


@task(on_engine=True, help={"lab": LAB_HELP})
def down(c, lab=None):
    """Remove everything this lab created except images (safe to run twice)."""
    lifecycle.down(c, lab_of(c, lab))


@task(on_engine=True, help={"base": "also remove the base image this lab bootstrapped", "lab": LAB_HELP})
def clean(c, base=False, lab=None):
    """Run down, then remove the lab's images."""
    lifecycle.clean(c, lab_of(c, lab), base)


@task(
    on_engine=True,
    iterable=["send"],
    help={
        "seconds": "stop after S seconds (10, 10s, 500ms, 2min)",
        "count": "stop after N packets",
        "filter": "capture only what this BPF filter matches, e.g. 'tcp port 7070'",
        "send": "send this request from a client container while capturing (repeatable)",
        "bulk": "download NBYTES with BULK while capturing",
        "name": "file name in captures/ (default: the date and time)",
        "engine": "lab (the AF_PACKET ring engine, default) or tcpdump, for comparison",
        "kernel": "also sample the kernel's TCP state (cwnd, ssthresh, RTO, states) of both hosts every 1 ms, "
                  "into captures/NAME.kernel.jsonl",
        "underlay": "a lab across hosts (engine swarm): also capture the server node's own interface, where the "
                    "lab's packets travel inside VXLAN, into captures/NAME.underlay.pcap",
        "all_frames": "keep every frame on the server's interface, also those no lab container sent (the host's "
                      "IPv6 announcements); by default a capture holds only the lab's",
        "verbose": VERBOSE_HELP,
        "lab": LAB_HELP,
    },
)
def capture(c, seconds=None, count=None, filter=None, send=None, bulk=None, name=None, engine="lab", kernel=False,
            underlay=False, all_frames=False, verbose=False, lab=None):
    """Capture the server's traffic to captures/NAME.pcapng, with a live view and annotations."""
    from lab.host.capture import recorder
    from lab.host.capture.request import capture_request
    from lab.terminal import console

    c.config.lab.verbose = verbose or c.config.lab.verbose
    request = capture_request(seconds, count, filter, exchange_options(send, bulk, student_tag()), name, engine, kernel,
                              underlay, all_frames)
    recorder.capture(c, lab_of(c, lab), request, console())


@task(on_engine=True, help={
    "target": "server or client: whose outgoing packets are impaired (default server; --clear: both)",
    "delay": "add this much delay: milliseconds (50), or with a unit (50ms, 0.05s)",
    "jitter": "vary the delay by this much, as --delay (needs --delay; never reorders)",
    "distribution": "of the jitter: normal (default; jitter is one standard deviation) or uniform (+/- jitter)",
    "loss": "lose this percentage of packets: 5 or 5%",
    "reorder": "send this percentage of packets without the delay, so they overtake (needs --delay): 5 or 5%",
    "rate": "limit the rate, in bits per second with its unit: 1mbit, 500kbit, 10 Mbit/s (8kbit to 10gbit); "
            "a bare number is refused (bits? kilobits?), and so is tc's 'mbps' (bytes)",
    "seed": "the same seed loses, delays and reorders the same packets (nfqueue engine)",
    "engine": "auto (default: netem where the kernel has it, else nfqueue), netem, or nfqueue (the lab's own)",
    "clear": "remove the impairments instead",
    "lab": LAB_HELP,
})
def impair(c, target=None, delay=None, jitter=None, distribution=None, loss=None, reorder=None, rate=None,
           seed=None, engine="auto", clear=False, lab=None):
    """Impair a lab link: delay, jitter, loss, reordering or a rate limit on what the target sends."""
    if clear:
        impairments.clear(c, lab_of(c, lab), target)
    else:
        impairment = impairments.parse(delay, jitter, loss, rate, reorder, distribution, seed)
        impairments.impair(c, lab_of(c, lab), target or "server", impairment, engine)


@task(iterable=["pcap"], help={
    "pcap": "a capture to study instead of a bundled one (repeatable): NN=FILE for notebook NN (and any other "
            "that studies the same kind, as 01-03 do), NAME=FILE for "
            "one of 07's or 08's (e.g. zero-window=FILE), or FILE for every notebook it fits",
    "port": "the port JupyterLab listens on (default 8888)",
    "lab": "the lab the notebooks' live cells act on (crafting, the kernel's sockets); default: the configuration's",
})
def notebook(c, pcap=None, port=None, lab=None):
    """Open the study notebooks in JupyterLab (needs the notebooks extra)."""
    from lab.host import jupyter
    from lab.teach.captures_chosen import capture_variables

    jupyter.open_notebooks(c, capture_variables(pcap or []), port, lab_of(c, lab).name)


@task(help={"check": "only say whether notebooks/html/ is current (exit 1 if a copy is stale), running nothing"})
def publish(c, check=False):
    """Run every notebook on its bundled captures and write the HTML copies in notebooks/html/ (needs nbconvert)."""
    from lab.errors import LabError
    from lab.host.progress import StepDisplay
    from lab.teach import publish as publishing
    from lab.terminal import say

    if check:
        stale = publishing.stale()
        if stale:
            raise LabError(f"stale in notebooks/html/: {', '.join(n.stem for n in stale)}; run invoke publish")
        say("notebooks/html/ is current: each copy was made from its notebook and captures as they are")
        return
    publishing.require_tools()
    with StepDisplay("running the notebooks") as show:
        written = publishing.publish(progress=lambda notebook: show(notebook.name))
    say(f"{len(written)} executed copies in notebooks/html/: open notebooks/html/01-handshake.html in a browser")


@task(help={
    "pcap": "capture file (default: the newest in captures/); a flag because invoke has no optional positionals",
    "json": "print one JSON object: connections, handshakes, teardowns, analysis flags",
    "csv": "print one CSV row per TCP frame",
    "ladders": "draw the ladder of connections with at most N frames (default 60; 0: none)",
    "stream": "only connection N (tcp.stream): its row, ladder and flags, or its --csv rows",
})
def inspect(c, pcap=None, json=False, csv=False, ladders=None, stream=None):
    """Explain a capture as Wireshark would: conversations, ladder diagrams, analysis flags."""
    from lab.errors import LabError
    from lab.inspect.cli import run

    code = run(pcap, json, csv, whole_number(ladders, "--ladders", 60), stream=whole_number(stream, "--stream"))
    if code:
        raise LabError(code=code)


@task(on_engine=True, iterable=["message"], help={"message": "a request line to send instead of the tour (repeatable)",
                                  "verbose": VERBOSE_HELP, "lab": LAB_HELP})
def demo(c, message=None, verbose=False, lab=None):
    """The lab's main job: bring the lab up, capture an exchange between the containers, explain it."""
    from lab.host import tour

    c.config.lab.verbose = verbose or c.config.lab.verbose
    tour.demo(c, lab_of(c, lab), message, student_tag())


@task(
    on_engine=True,
    positional=["name"],
    help={"name": "a bundled scenario (invoke scenario list: syn-loss, fast-retransmit, burst-loss, tail-loss-probe, "
                  "tail-loss-rto, reorder, slow-start, aimd, bbr, bufferbloat, fairness, fairness-bbr-reno, zero-window, "
                  "nagle, nagle-off) or a .toml file",
          "seed": "a seed: it picks the lost segment and the link's numbers (default: the student's, set by invoke "
                  "student, else the config's lab.seed, 1)",
          "verbose": VERBOSE_HELP,
          "lab": LAB_HELP},
)
def scenario(c, name, seed=None, verbose=False, lab=None):
    """Run a scripted scenario: its link and packet events, the exchange captured with the kernel's view, checked."""
    c.config.lab.verbose = verbose or c.config.lab.verbose
    from lab.host import scenario as scenarios
    from lab.scenarios import model
    from lab.terminal import console, say

    if name == "list":
        for bundled in model.bundled():
            say(f"{bundled}: {model.load(bundled).title}")
        return
    chosen = model.load(name, whole_number(seed, "--seed") if seed is not None else scenario_seed(c))
    the_lab = lab_of(c, lab)
    pcap = scenarios.run(c, the_lab, chosen, console(), student_tag())
    verdicts, cc = scenarios.judge(pcap, chosen, the_lab.port)
    if not scenarios.report(verdicts, chosen, cc, console()):
        raise LabError(f"{pcap.name}: the capture does not show what {chosen.name} expects (see above)")


def scenario_seed(c) -> int:
    """The student's seed (invoke student), else the config's lab.seed (1 by default)."""
    from lab.course.variant import current

    student = current()
    return student[1].seed if student else whole_number(str(c.config.lab.seed), "lab.seed")


@task(positional=["name"], help={"name": "the course's name (lowercase letters, digits, '-', '_', '.')",
                                  "folder": "where to write NAME.secret and NAME.course.toml (default: here)",
                                  "room": "its students work in a lab room (invoke room up): grading requires the "
                                          "signature the room's broker puts on each capture"})
def course(c, name, folder=".", room=False):
    """Make a course: a secret the instructor keeps, and a course file every student gets."""
    from pathlib import Path

    from lab.course.variant import create
    from lab.terminal import say

    secret, course_file = create(name, Path(folder), room)
    say(f"{secret}: the course's secret; keep it (grading needs it) and give it to nobody")
    say(f"{course_file}: give this one file to every student: invoke student ID --course {course_file.name}")


@task(positional=["student_id"], help={"student_id": "your id, as on the class roster",
                                       "course": "the course file your instructor gave you (NAME.course.toml)"})
def student(c, student_id, course=None):
    """Set who works here, for which course: your scenarios, messages and BULK size become your own."""
    from pathlib import Path

    from lab.course.variant import set_student
    from lab.terminal import say

    if not course:
        raise LabError("give the course file your instructor gave you: invoke student ID --course NAME.course.toml")
    variant = set_student(student_id, Path(course))
    say(f"you are {variant.student}: scenarios run with your seed {variant.seed}; your ECHO lines carry "
        f"{variant.tag}; for notebook 04 capture: invoke capture --bulk {variant.bulk_bytes}")
    say("your answers are recorded as the notebooks check them; hand them in with: invoke submit")


@task(iterable=["pcap"], help={"pcap": "a capture to hand in besides those your answers are about (repeatable)"})
def submit(c, pcap=None):
    """Pack your recorded answers and their captures into submissions/COURSE-ID-TIME.zip, to hand in."""
    from lab.course.submitting import submit as pack
    from lab.terminal import say

    pack(pcap, say=say)


@task(positional=["submissions"], help={
    "submissions": "the folder of the students' archives (*.zip), or an LMS's download of them (Canvas, Moodle)",
    "roster": "the roster: one id a line, or a CSV (an LMS's export) with an id, login, username or email column",
    "secret": "the course's secret (NAME.secret, from invoke course)",
    "course": "the course file, for its [points] (default: NAME.course.toml beside the secret, if there)",
    "map": "a CSV of archive,student: who handed in which archive, when no LMS export says it",
    "deadline": "when work was due (2026-12-01T23:59, UTC unless it says +01:00): later archives are marked late",
    "only": "grade this student's archives again, keeping everyone else's results from the last run",
    "out": "where to write the grades, the LMS exports, report.txt, feedback/ and work/ (default: grades/ beside "
           "the archives)",
})
def grade(c, submissions, roster=None, secret=None, course=None, map=None, deadline=None, only=None, out=None):
    """Grade every submission: re-analyse its captures, re-check its answers, find copies and forgeries."""
    from pathlib import Path

    from rich.markup import escape

    from lab.course.collected import parse_deadline, read_map
    from lab.course.gradebook import printable
    from lab.course.grading import grade_all, read_points
    from lab.course.students import read_roster
    from lab.course.variant import course_uses_room, read_secret
    from lab.terminal import console

    if not roster or not secret:
        raise LabError("give --roster FILE and --secret NAME.secret: the grader checks each capture against "
                       "its student's variant")
    key = read_secret(Path(secret))
    course_file = Path(course) if course else Path(secret).with_name(f"{key.name}.course.toml")
    if course and not course_file.is_file():
        raise LabError(f"no course file {course}: give the NAME.course.toml that invoke course wrote")
    folder = Path(submissions)
    out_folder = Path(out) if out else folder.resolve().parent / "grades"
    term = console()
    grading = grade_all(folder, read_roster(Path(roster)), key, out_folder,
                        progress=lambda graded: term.print(escape(printable(f"{graded.archive}: {graded.verdict}")),
                                                           highlight=False),
                        weights=read_points(course_file) if course_file.is_file() else None,
                        deadline=parse_deadline(deadline) if deadline else None,
                        mapping=read_map(Path(map)) if map else None, only=only,
                        signed=course_file.is_file() and course_uses_room(course_file))
    accepted = sum(graded.accepted for graded in grading.results)
    suspicions = len(grading.suspicions())
    term.print(f"{accepted} of {len(grading.results)} archives graded; {suspicions} suspicions in report.txt; "
               f"see {escape(str(out_folder))}/students.csv (and canvas.csv, moodle.csv to import)",
               highlight=False)


@task(name="class", positional=["action"], help={
    "action": "up, status or down",
    "count": "up: this many labs, GROUP-01 .. GROUP-N",
    "roster": "up: a lab for each student of the roster, GROUP-ID",
    "group": "the class's name, the prefix of its labs (default: class)",
})
def class_(c, action, count=None, roster=None, group="class"):
    """Many labs on one engine, one per student: class up, class status, class down act on all of them, only them."""
    from pathlib import Path

    from lab.course.students import lab_name, read_roster
    from lab.host import classroom
    from lab.host.settings import check_name

    check_name(group, "class name")
    if action == "up":
        students = read_roster(Path(roster)).ids if roster else []
        names = classroom.lab_names(group, whole_number(count, "--count") if count is not None else None,
                                    {student: lab_name(group, student) for student in students})
        classroom.up(c, group, names)
    elif action == "status":
        classroom.status(c, group)
    elif action == "down":
        classroom.down(c, group)
    else:
        raise LabError(f"class takes up, status or down, not {action!r}")


@task(positional=["action"], help={
    "action": "up, status or down",
    "roster": "up: the students (one id a line, or an LMS's CSV export), each with a login, a JupyterLab and a lab",
    "secret": "up: the course's secret (NAME.secret from invoke course --room; its NAME.course.toml beside it): "
              "the room signs captures with a key derived from it, so invoke grade can check them (default: the "
              "room makes a course of its own in rooms/NAME/)",
    "name": "the room's name (default: room); its labs are NAME-ID",
    "port": "up: the port students' browsers open on this server (default 8000)",
    "memory": "up: each student's JupyterLab may use this much memory (default 1g)",
    "idle": "up: stop a JupyterLab nobody used for this long (default 60min; 30s, 0: never); the student's files "
            "stay, and logging in starts it again",
    "work": "down: also remove the students' files (their JupyterLab volumes) and the room's data",
})
def room(c, action, roster=None, secret=None, name="room", port=None, memory=None, idle=None, work=False):
    """A lab room: students use JupyterLab and a lab of their own from a browser, without Docker."""
    from lab.host.room import lifecycle as rooms
    from lab.host.settings import check_name

    check_name(name, "room name")
    if action == "up":
        rooms.up(c, room_settings(name, roster, secret, port, memory, idle))
    elif action == "status":
        rooms.status(c, name)
    elif action == "down":
        rooms.down(c, name, work)
    else:
        raise LabError(f"room takes up, status or down, not {action!r}")


def room_settings(name, roster, secret, port, memory, idle):
    """`room up`'s options as the room's settings: the roster's students and labs, the course and its key."""
    from pathlib import Path

    from lab.course.students import lab_name, read_roster
    from lab.course.variant import create, read_secret
    from lab.host.options import number, quantity
    from lab.host.room import plan
    from lab.host.room.lifecycle import ROOMS, RoomSettings, Student
    from lab.terminal import say

    if not roster:
        raise LabError("give --roster FILE: the room's students, one id a line (or an LMS's CSV export)")
    ids = read_roster(Path(roster)).ids
    port = int(number(port, "--port", whole=True, low=1, high=65535, default=8000))
    idle_seconds = plan.IDLE_SECONDS if idle is None else int(quantity(idle, "--idle", "s", high=7 * 86400) or 0)
    memory = memory or plan.STUDENT_MEMORY
    try:
        plan.memory_bytes(memory)
    except ValueError as error:
        raise LabError(f"--{error}") from None
    if not secret:
        secret_path = ROOMS / name / f"{name}.secret"
        if not secret_path.is_file():
            secret_path, _ = create(name, ROOMS / name, room=True)
            say(f"{secret_path}: the room's own course (grade its captures with --secret {secret_path})")
        secret = str(secret_path)
    course = read_secret(Path(secret))
    course_file = Path(secret).with_name(f"{course.name}.course.toml")
    if not course_file.is_file():
        raise LabError(f"no {course_file.name} beside {secret}: the room hands every student the course file")
    students = tuple(Student(student, lab_name(name, student), student.lower()) for student in ids)
    return RoomSettings(name, students, course.name, course_file.read_text(), course.room_key, port, memory,
                        idle=idle_seconds)


ns = Collection(build, up, send, bulk, chat, status, doctor, logs, down, clean, demo, capture, impair, scenario, inspect,
                notebook, publish, course, student, submit, grade, class_, room)
ns.configure({"lab": DEFAULTS})
help_and_suggestions()          # `invoke TASK --help` shows help; a mistyped task gets the closest names
