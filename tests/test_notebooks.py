"""The study notebooks run top to bottom, and their exercise checkers judge answers right."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lab.paths import CAPTURES_DIR
from lab.teach.exercises import QUESTIONS, Exercises
from tests.helpers import invoke

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
DATA = NOTEBOOKS[0].parent / "data"
BULK_QUESTIONS = {"first_segment_lengths", "sample_rtts_ms", "estimated_rtt_ms", "minimum_window", "window_throttled",
                  "retransmitted", "acked_bytes", "acks_every_other_segment", "throughput_mbit",
                  "slow_start_ends_s", "fleet_period_ms"}
UDP_QUESTIONS = {"udp_requests", "udp_unanswered", "udp_header_bytes"}


def execute(path: Path) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in its folder, as nbmake and Jupyter do; errors raise."""
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return book


def text_of(book: nbformat.NotebookNode) -> str:
    return "\n".join(out.get("text", "") for cell in book.cells if cell.cell_type == "code" for out in cell.outputs)


def test_there_are_six_numbered_notebooks():
    assert [p.name.split("-")[0] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_notebook_runs_top_to_bottom_on_the_bundled_capture(path, monkeypatch):
    monkeypatch.delenv("TCPLAB_PCAP", raising=False)
    monkeypatch.setenv("INVOKE_LAB_NAME", "nlt-no-such-lab")    # the lab-only cells must skip, not fail
    book = execute(path)
    out = text_of(book)
    assert "(bundled;" in out
    assert "replace ... with your answer" in out or path.stem.startswith("05")
    assert "Traceback" not in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_stored_without_outputs_and_open_with_a_parameters_cell(path):
    book = json.loads(path.read_text())
    code = [cell for cell in book["cells"] if cell["cell_type"] == "code"]
    assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code)
    assert any("parameters" in cell["metadata"].get("tags", []) for cell in code)
    assert book["cells"][0]["cell_type"] == "markdown" and "What you will see" in "".join(book["cells"][0]["source"])


def exercises_for(name: str) -> Exercises:
    if name in BULK_QUESTIONS:
        return Exercises(DATA / "bulk-loss.pcapng", bulk=True)
    if name in UDP_QUESTIONS:
        return Exercises(DATA / "udp.pcapng")
    return Exercises(DATA / "exchange.pcapng")


def wrong(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 3 + 7
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (int, float)):
        return [v * 3 + 7 for v in value]
    return "not it"


def accepted_answers(truth) -> list:
    """Every value the checker would accept, one by one (a tuple of spellings, a list's items)."""
    if isinstance(truth, (tuple, set, list)):
        return [item for value in truth for item in accepted_answers(value)]
    return [truth]


def gives_away(message: str, truth) -> bool:
    """True if ``message`` shows any accepted answer as a word or number of its own."""
    for answer in accepted_answers(truth):
        if isinstance(answer, bool):
            continue      # True/False are the question's own words
        if re.search(rf"(?<![\w.]){re.escape(str(answer))}(?![\w]|\.\d)", message, re.IGNORECASE):
            return True
    return False


def test_the_give_away_check_catches_an_answer_in_a_message():
    assert gives_away("✘ x: not quite. Hint: it is 2846131205", 2846131205)
    assert gives_away("Hint: relative 1, raw 3735928559", (1, 3735928559))
    assert gives_away("Hint: 10.0.0.2:7000 is the server", ("10.0.0.2:7000",))
    assert not gives_away("Hint: apply 0.875 * EstimatedRTT + 0.125 * SampleRTT", 0.062)


@pytest.mark.parametrize("name", list(QUESTIONS))
def test_the_right_answer_passes_and_a_wrong_one_gets_a_hint(name):
    ex = exercises_for(name)
    truth = ex.reveal(name)
    right = truth[0] if QUESTIONS[name].kind in ("either", "text") and isinstance(truth, (tuple, set)) else truth
    assert ex.verdict(name, right).ok is True
    verdict = ex.verdict(name, wrong(right))
    assert verdict.ok is False and "Hint:" in verdict.message
    assert not gives_away(verdict.message, truth)    # a hint never gives the answer away


def test_unanswered_is_a_reminder_not_a_failure():
    verdict = Exercises(DATA / "exchange.pcapng").verdict("syn_sequence_number", ...)
    assert verdict.ok is None and "replace ... with your answer" in verdict.message


def test_answers_are_read_the_way_a_learner_writes_them():
    ex = Exercises(DATA / "exchange.pcapng")
    assert ex.verdict("syn_flag", "syn").ok and ex.verdict("syn_flag", "S").ok
    assert ex.verdict("first_fin_side", " Client ").ok
    assert ex.verdict("sack_permitted", "yes").ok is ex.reveal("sack_permitted")
    relative, raw = ex.reveal("first_request_seq")
    assert ex.verdict("first_request_seq", relative).ok and ex.verdict("first_request_seq", raw).ok
    rtt = ex.reveal("handshake_rtt_ms")
    assert ex.verdict("handshake_rtt_ms", rtt * 1.04).ok and not ex.verdict("handshake_rtt_ms", rtt * 2).ok


def test_the_exercises_use_the_learners_own_numbers():
    ours = Exercises(DATA / "exchange.pcapng").reveal("syn_sequence_number")
    crafted = Exercises(DATA / "crafted.pcapng").reveal("syn_sequence_number")
    assert ours != crafted


LAB = "nlt-nb"


@pytest.fixture(scope="module")
def lab():
    assert invoke("up", "--lab", LAB).returncode == 0
    yield LAB
    invoke("down", "--lab", LAB)


@pytest.mark.docker
@pytest.mark.parametrize("path", NOTEBOOKS[:3], ids=[p.stem for p in NOTEBOOKS[:3]])
def test_notebooks_01_to_03_run_on_a_fresh_capture(path, lab, monkeypatch):
    name = f"nlt-nb-{path.stem}"
    try:
        result = invoke("capture", "--send", "ECHO my own capture", "--send", "TIME", "--name", name, "--lab", lab)
        assert result.returncode == 0, result.stderr
        capture = CAPTURES_DIR / f"{name}.pcapng"
        monkeypatch.setenv("TCPLAB_PCAP", str(capture))
        monkeypatch.setenv("INVOKE_LAB_NAME", lab)
        out = text_of(execute(path))
        assert f"studying {capture}" in out and "(bundled;" not in out
    finally:
        (CAPTURES_DIR / f"{name}.pcapng").unlink(missing_ok=True)


@pytest.mark.docker
def test_the_crafting_notebook_crafts_with_the_lab_up(lab, monkeypatch):
    monkeypatch.delenv("TCPLAB_PCAP", raising=False)
    monkeypatch.setenv("INVOKE_LAB_NAME", lab)
    out = text_of(execute(NOTEBOOKS[4]))
    assert "needs the running lab" not in out
    assert "our kernel has no socket for this connection" in out
    assert "the server answered: 'OK crafted by hand'" in out
