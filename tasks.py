"""netlab's front door: `invoke --list` shows every task, `invoke --help TASK` its options.

Each task is a few lines; the work is done in the lab package (lab/orchestrate.py
and friends), which takes the invoke Context so it can be tested with MockContext.
"""

from invoke import Collection, task
from invoke.exceptions import Exit

from lab.host import image, orchestrate
from lab.host.options import LAB_HELP, lab_of, one_line_errors, whole_number
from lab.host.docker import Docker

TOUR = ["ECHO hello, TCP", "UPPER a byte stream", "TIME"]


@task(help={"lab": LAB_HELP})
@one_line_errors
def build(c, lab=None):
    """Build the lab's image (on debian:bookworm-slim, or a base made from Debian's packages)."""
    settings = lab_of(c, lab)
    image.build(c, settings, Docker(c))


@task(help={"lab": LAB_HELP})
@one_line_errors
def up(c, lab=None):
    """Start the lab: network, server and client host; returns when the server answers."""
    orchestrate.up(c, lab_of(c, lab))


@task(
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
@one_line_errors
def send(c, message, next=None, udp=False, step=False, lab=None):
    """Send requests from a one-shot client container and print the server's replies."""
    args = orchestrate.client_options([message, *(next or [])], udp=udp, step=step)
    orchestrate.send(c, lab_of(c, lab), args, tty=step)


@task(positional=["nbytes"], help={"nbytes": "how many bytes to download", "lab": LAB_HELP})
@one_line_errors
def bulk(c, nbytes, lab=None):
    """Download NBYTES from the server with BULK, check them, and report throughput."""
    orchestrate.send(c, lab_of(c, lab), orchestrate.bulk_options(nbytes))


@task(help={"lab": LAB_HELP})
@one_line_errors
def chat(c, lab=None):
    """Type requests to the server from an interactive client container (needs a terminal)."""
    orchestrate.chat(c, lab_of(c, lab))


@task(help={"lab": LAB_HELP})
@one_line_errors
def status(c, lab=None):
    """Show the lab's containers: role, IP, MAC, ports, state and active impairments."""
    orchestrate.status(c, lab_of(c, lab))


@task(help={"role": "server or client (default server)", "follow": "keep printing new lines",
            "tail": "only the last N lines", "lab": LAB_HELP})
@one_line_errors
def logs(c, role="server", follow=False, tail=None, lab=None):
    """Print a lab container's log (the server logs one line per connection)."""
    orchestrate.logs(c, lab_of(c, lab), role, follow, whole_number(tail, "--tail"))


@task(help={"lab": LAB_HELP})
@one_line_errors
def down(c, lab=None):
    """Remove everything this lab created except images (safe to run twice)."""
    orchestrate.down(c, lab_of(c, lab))


@task(help={"base": "also remove the base image this lab bootstrapped", "lab": LAB_HELP})
@one_line_errors
def clean(c, base=False, lab=None):
    """Run down, then remove the lab's images."""
    orchestrate.clean(c, lab_of(c, lab), base)


@task(
    iterable=["send"],
    help={
        "seconds": "stop after S seconds",
        "count": "stop after N packets",
        "filter": "capture only what this BPF filter matches, e.g. 'tcp port 7000'",
        "send": "send this request from a client container while capturing (repeatable)",
        "bulk": "download NBYTES with BULK while capturing",
        "name": "file name in captures/ (default: the date and time)",
        "engine": "lab (the AF_PACKET ring engine, default) or tcpdump, for comparison",
        "lab": LAB_HELP,
    },
)
@one_line_errors
def capture(c, seconds=None, count=None, filter=None, send=None, bulk=None, name=None, engine="lab", lab=None):
    """Capture the server's traffic to captures/NAME.pcapng, with a live view and annotations."""
    from lab.host import recorder
    from lab.terminal import console

    client_args = orchestrate.client_options(send) if send else []
    if bulk is not None:
        client_args = [*client_args, *orchestrate.bulk_options(bulk)] if not send else None
    if client_args is None:
        raise Exit("--send and --bulk cannot be combined: the client does one or the other")
    plan = recorder.plan(seconds, count, filter, client_args, name, engine)
    recorder.capture(c, lab_of(c, lab), plan, console())


@task(help={
    "target": "server or client: whose outgoing packets are impaired (default server; --clear: both)",
    "delay": "add this many milliseconds of delay (needs sch_netem)",
    "jitter": "vary the delay by up to this many milliseconds (needs --delay)",
    "loss": "lose this percentage of packets, e.g. 5",
    "rate": "limit the rate, e.g. 1mbit or 500kbit",
    "clear": "remove the impairments instead",
    "lab": LAB_HELP,
})
@one_line_errors
def impair(c, target=None, delay=None, jitter=None, loss=None, rate=None, clear=False, lab=None):
    """Impair a lab link: delay, jitter, loss or a rate limit on what the target sends."""
    from lab.host import impair as impairments

    settings = lab_of(c, lab)
    if clear:
        impairments.clear(c, settings, target)
    else:
        impairments.impair(c, settings, target or "server", impairments.parse(delay, jitter, loss, rate))


@task(help={
    "pcap": "a capture the notebooks study instead of the bundled ones (sets NETLAB_PCAP)",
    "port": "the port JupyterLab listens on (default 8888)",
})
@one_line_errors
def notebook(c, pcap=None, port=None):
    """Open the study notebooks in JupyterLab (needs the notebooks extra)."""
    import os
    import shutil
    import sys
    from pathlib import Path

    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists() and not shutil.which("jupyter-lab"):
        raise Exit("JupyterLab is not installed here: .venv/bin/pip install -e '.[notebooks]'")
    env = {"NETLAB_PCAP": str(Path(pcap).resolve())} if pcap else {}
    as_root = " --allow-root" if os.geteuid() == 0 else ""   # JupyterLab refuses root without it
    port = whole_number(port, "--port", 8888)
    c.run(f"{jupyter if jupyter.exists() else 'jupyter'} lab --notebook-dir notebooks --port {port}{as_root}",
          env=env, pty=True, echo=True)


@task(help={
    "pcap": "capture file (default: the newest in captures/); a flag because invoke has no optional positionals",
    "json": "print one JSON object: connections, handshakes, teardowns, analysis flags",
    "csv": "print one CSV row per TCP frame",
    "ladders": "draw the ladder of connections with at most N frames (default 60; 0: none)",
    "stream": "only connection N (tcp.stream): its row, ladder and flags, or its --csv rows",
})
@one_line_errors
def inspect(c, pcap=None, json=False, csv=False, ladders=None, stream=None):
    """Explain a capture as Wireshark would: conversations, ladder diagrams, analysis flags."""
    from lab.inspect.cli import main

    code = main([*([pcap] if pcap else []), *(["--json"] if json else []), *(["--csv"] if csv else []),
                 "--ladders", str(whole_number(ladders, "--ladders", 60)),
                 *(["--stream", str(whole_number(stream, "--stream", 0))] if stream is not None else [])])
    if code:
        raise Exit(code=code)


@task(iterable=["message"], help={"message": "a request line to send instead of the tour (repeatable)",
                                  "lab": LAB_HELP})
@one_line_errors
def demo(c, message=None, lab=None):
    """The lab's main job: bring the lab up, capture an exchange between the containers, explain it."""
    from lab.host import recorder
    from lab.terminal import console
    from lab.inspect.cli import run as explain

    settings = lab_of(c, lab)
    orchestrate.up(c, settings)
    plan = recorder.plan(client_args=orchestrate.client_options(message or TOUR),
                         name=f"demo-{recorder.capture_name(None)}")
    path = recorder.capture(c, settings, plan, console())
    explain(str(path))
    orchestrate.status(c, settings)


ns = Collection(build, up, send, bulk, chat, status, logs, down, clean, demo, capture, impair, inspect, notebook)
