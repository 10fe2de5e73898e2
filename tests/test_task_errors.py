"""Bad input to any task is one line and exit 1, never a traceback (no Docker engine needed)."""

from __future__ import annotations

import shutil

import pytest

from lab.teach.notebook import STUDIES
from tests.helpers import ROOT, invoke


@pytest.mark.parametrize("args, message", [
    (["notebook", "--port", "notaport"], "--port takes a whole number, got 'notaport'"),
    (["inspect", "--ladders", "x"], "--ladders takes a whole number, got 'x'"),
    (["logs", "--tail", "many", "--lab", "nlt-never-up"], "--tail takes a whole number, got 'many'"),
    (["impair", "--target", "bogus", "--loss", "5", "--lab", "nlt-never-up"], "--target must be server or client, got 'bogus'"),
    (["impair", "--jitter", "5", "--lab", "nlt-never-up"], "give --delay too"),
    (["capture", "--engine", "wireshark", "--lab", "nlt-never-up"], "--engine must be one of lab, tcpdump"),
    (["capture", "--send", "ECHO x", "--bulk", "5", "--lab", "nlt-never-up"], "--send and --bulk cannot be combined"),
    (["capture", "--count", "-3", "--lab", "nlt-never-up"], "--count must be more than 0, got -3"),
    (["bulk", "lots", "--lab", "nlt-never-up"], "NBYTES takes a whole number, got 'lots'"),
    (["inspect", "--pcap", "/nonexistent.pcap"], "no such file: /nonexistent.pcap"),
    (["up", "--lab", "rel9\n"], "lab name 'rel9\\n' is not usable"),
    (["capture", "--seconds", "nan", "--lab", "nlt-never-up"], "--seconds takes a finite number, got 'nan'"),
    (["capture", "--seconds", "inf", "--lab", "nlt-never-up"], "--seconds takes a finite number, got 'inf'"),
    (["capture", "--seconds", "1e309", "--lab", "nlt-never-up"], "--seconds takes a finite number, got '1e309'"),
    (["capture", "--name", "ok\n", "--lab", "nlt-never-up"], "is not a usable file name"),
    (["capture", "--name", "[/]", "--lab", "nlt-never-up"], "is not a usable file name"),
    (["notebook", "--port", "99999"], "--port must be between 1 and 65535, got 99999"),
    (["impair", "--loss", "100.0001", "--lab", "nlt-never-up"], "--loss must be between 0 and 100, got 100.0001"),
    (["impair", "--delay", "5", "--seed", "100000000000", "--lab", "nlt-never-up"],
     "--seed must be between 0 and 2147483647, got 100000000000"),
    (["impair", "--rate", "1bit", "--lab", "nlt-never-up"], "--rate 1bit is out of tc's range for the lab's link"),
    (["impair", "--rate", "99999999999gbit", "--lab", "nlt-never-up"], "give 8kbit to 10gbit"),
    (["impair", "--rate", "0bit", "--lab", "nlt-never-up"], "give a rate above 0"),
    (["impair", "--rate", "1mbps", "--lab", "nlt-never-up"], "tc reads 'bps' as bytes per second"),
    (["inspect", "--json", "--stream", "1", "--pcap", "notebooks/data/exchange.pcapng"], "--json lists every connection"),
    (["send", "ECHO x", "--step", "--lab", "nlt-never-up"], "--step waits for Enter before each step"),
    (["scenario", "no-such-scenario"], "no scenario 'no-such-scenario'"),
    (["up", "--cc", "nosuchcc", "--lab", "nlt-never-up"], "not 'nosuchcc'"),
    (["notebook", "--pcap", "04=/nonexistent.pcapng"], "no capture at /nonexistent.pcapng"),
    (["notebook", "--pcap", "04=notebooks/data/exchange.pcapng"],
     "lacks what notebook 04 studies (a download with retransmissions); make one with: invoke impair --loss 2"),
    (["notebook", "--pcap", "07=notebooks/data/slow-start.pcapng"], f"notebook 07 studies {len(STUDIES['07'])} captures: name which"),
    (["notebook", "--pcap", "zero-window=notebooks/data/bulk-loss.pcapng"], "lacks what notebook 08 studies (a zero window that opened again"),
    (["notebook", "--pcap", "README.md"], "README.md: not a pcap or pcapng file"),
])
def test_bad_input_is_one_line(args, message):
    result = invoke(*args)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


@pytest.mark.needs("docker")
def test_an_engine_that_does_not_answer_is_one_line():
    result = invoke("status", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    assert "Docker engine is not running" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_docker_command_is_one_line(tmp_path):
    for tool in ("bash", "sh"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    result = invoke("status", env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "docker command is not installed" in result.stderr


def test_notebook_without_jupyterlab_is_one_line():
    result = invoke("notebook", env={"PATH": "/nonexistent"})
    if shutil.which("jupyter-lab") or (ROOT / ".venv" / "bin" / "jupyter-lab").exists():
        pytest.skip("JupyterLab is installed here")
    assert result.returncode == 1
    assert result.stderr.strip() == "JupyterLab is not installed here: .venv/bin/pip install -e '.[notebooks]'"


def test_notebook_passes_its_lab_to_the_notebooks_live_cells(monkeypatch):
    """`invoke notebook --lab X`: the kernels get INVOKE_LAB_NAME=X, the variable lab.teach.notebook reads."""
    from invoke import Context

    from lab.host import jupyter

    ran = {}
    monkeypatch.setattr(jupyter, "jupyter_command", lambda: "jupyter-lab")
    monkeypatch.setattr(Context, "run", lambda self, command, **kwargs: ran.update(command=command, **kwargs))
    jupyter.open_notebooks(Context(), None, None, "walk")
    assert ran["env"] == {"INVOKE_LAB_NAME": "walk"} and "--notebook-dir" in ran["command"]


def test_notebook_hands_each_notebook_its_own_capture(monkeypatch):
    """`--pcap 04=FILE` and `--pcap zero-window=FILE` reach only the notebooks that study that kind."""
    from invoke import Context

    from lab.host import jupyter

    ran = {}
    monkeypatch.setattr(jupyter, "jupyter_command", lambda: "jupyter-lab")
    monkeypatch.setattr(Context, "run", lambda self, command, **kwargs: ran.update(command=command, **kwargs))
    data = ROOT / "notebooks" / "data"
    from lab.teach.captures_chosen import capture_variables

    chosen = capture_variables([f"04={data / 'slow-start.pcapng'}", f"zero-window={data / 'zero-window.pcapng'}",
                                str(data / "exchange.pcapng")])
    jupyter.open_notebooks(Context(), chosen, None, "walk")
    assert ran["env"] == {"INVOKE_LAB_NAME": "walk", "TCPLAB_PCAP_BULK_LOSS": str(data / "slow-start.pcapng"),
                          "TCPLAB_PCAP_ZERO_WINDOW": str(data / "zero-window.pcapng"),
                          "TCPLAB_PCAP": str(data / "exchange.pcapng")}


def test_the_users_configuration_reaches_the_class_and_the_notebooks(monkeypatch):
    """`class up` tagged each lab's image from the defaults (tcplab/lab) while each lab's own
    `up` looked for the configured repository; a notebook's live cells acted on the default
    lab's port and image whatever invoke.yaml or INVOKE_LAB_* said."""
    from invoke import Result

    from lab.host import classroom, image
    from lab.host.live import topology_of
    from lab.teach import notebook
    from tests.helpers import mock_docker

    monkeypatch.setenv("INVOKE_LAB_IMAGE", "uni.example/lab")
    monkeypatch.setenv("INVOKE_LAB_PORT", "7171")
    assert topology_of().lab.image == "uni.example/lab:tcplab" and notebook.lab_port() == 7171
    c = mock_docker({r"docker tag": Result("")})
    c.config["lab"] = {"image": "uni.example/lab"}
    built = []
    monkeypatch.setattr(image, "build_unless_current", lambda c, lab, docker: built.append(lab.image))
    classroom.shared_image(c, "room", {"room-01": None, "room-02": None})
    tags = [call.args[0] for call in c.run.call_args_list if "docker tag" in call.args[0]]
    assert built == ["uni.example/lab:room"]
    assert tags == ["docker tag uni.example/lab:room uni.example/lab:room-01",
                    "docker tag uni.example/lab:room uni.example/lab:room-02"]


def test_a_captures_folder_that_cannot_be_written_is_one_line_before_anything_starts(tmp_path):
    """A file, a link to nowhere: each was "unexpected error: OSError ..."."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    nowhere = tmp_path / "nowhere"
    nowhere.symlink_to(tmp_path / "gone")
    for folder, said in ((a_file, "is a file, not a folder: move it away"),
                         (nowhere, "which does not exist: create that folder, or remove the link")):
        result = invoke("capture", "--count", "1", "--lab", "nlt-never-up", env={"TCPLAB_CAPTURES": str(folder)})
        assert result.returncode == 1 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.needs("root")          # it mounts a read-only filesystem (root writes through file modes)
def test_a_read_only_captures_folder_is_one_line(tmp_path):
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=True)
    try:
        result = invoke("capture", "--count", "1", "--lab", "nlt-never-up", env={"TCPLAB_CAPTURES": str(folder)})
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)
    assert result.returncode == 1 and "is read-only for you: make it writable" in result.stderr, result.stderr


@pytest.mark.slow          # invoke started once for each case
@pytest.mark.parametrize("args", [["inspect"], ["inspect", "--csv"], ["inspect", "--json"]])
def test_a_reader_that_goes_away_ends_the_task_quietly_as_unix_tools_end(args):
    """`invoke inspect ... | head` exited 1, sometimes with "unexpected error: BrokenPipeError"."""
    import subprocess
    import sys

    task = subprocess.Popen([sys.executable, "-m", "invoke", *args, "--pcap", "notebooks/data/slow-start.pcapng"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    task.stdout.read(10)
    task.stdout.close()                     # as head does once it has its lines
    assert task.wait(60) == 141 and task.stderr.read() == b""


def catches_sigint(pid: int) -> bool | None:
    """Whether the process has a handler for SIGINT (Python's, or a task's), from /proc; None once gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return None
    return bool(caught & (1 << (2 - 1)))


@pytest.mark.slow          # it starts invoke four times and interrupts it
@pytest.mark.parametrize("after_s", [0.0, 0.03, 0.08, 0.3])
def test_ctrl_c_while_invoke_starts_is_quiet(after_s):
    """Ctrl-C in invoke's first tenth of a second printed a KeyboardInterrupt traceback from its imports.
    From the moment .ci/setup's .pth file has run (Python then no longer catches SIGINT: seen in
    /proc), Ctrl-C is quiet; only Python's own first moments, before any .pth file, are not ours."""
    import signal
    import subprocess
    import sys
    import time

    task = subprocess.Popen([sys.executable, "-m", "invoke", "inspect", "--pcap", "notebooks/data/exchange.pcapng"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    for python_handles_it in (False, True):      # Python installs its handler at start-up; the .pth takes it away
        while catches_sigint(task.pid) is python_handles_it and time.monotonic() < deadline:
            time.sleep(0.0005)
    time.sleep(after_s)
    task.send_signal(signal.SIGINT)
    _, err = task.communicate(timeout=60)
    assert "Traceback" not in err and task.returncode in (-signal.SIGINT, 130, 0), (task.returncode, err)


@pytest.mark.parametrize("options, expected", [
    ({"delay": "50ms"}, 50.0), ({"delay": "0.05s"}, 50.0), ({"delay": "50"}, 50.0), ({"delay": " 50 ms "}, 50.0),
])
def test_a_delay_is_taken_with_the_unit_a_person_types(options, expected):
    from lab.host.impair import parse

    assert parse(**options).delay_ms == expected


def test_percentages_and_rates_are_taken_with_their_units_and_a_bare_rate_is_refused_as_ambiguous():
    from lab.errors import LabError
    from lab.host.impair import parse

    assert parse(loss="5%").loss_pct == 5 and parse(delay="20", reorder="10%").reorder_pct == 10
    assert parse(rate="10 Mbit/s").rate == "10mbit" and parse(rate="500kbit").rate == "500kbit"
    with pytest.raises(LabError, match="--rate 1000 is ambiguous: say its unit"):
        parse(rate="1000")
    with pytest.raises(LabError, match=r"--delay takes a number in ms, got '50 parsecs'"):
        parse(delay="50 parsecs")


@pytest.mark.slow          # invoke started once for each case
@pytest.mark.parametrize("task", ["send", "bulk", "scenario", "capture"])
def test_a_tasks_help_shows_help_and_runs_nothing(task):
    """`invoke send --help` started a client container with "--help" as its message."""
    result = invoke(task, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"Usage: inv[oke] [--core-opts] {task} "), result
    assert "is not up" not in result.stdout + result.stderr


def test_a_mistyped_task_gets_the_closest_names():
    result = invoke("captur")
    assert result.returncode == 1
    assert result.stderr.strip() == ("No idea what 'captur' is! Did you mean 'capture' or 'chat'? "
                                     "(invoke --list shows the tasks)")
