"""`invoke publish`: every notebook run on its bundled captures and written as HTML.

The repository keeps the notebooks without outputs, so that a change shows what changed
in the teaching and not in a figure's bytes; but then a reader on a web page sees no
figure and no answer to anything. The executed copies in notebooks/html/ are for
reading before running anything. Each carries a digest of what it was made from (the
notebook's cells and the captures it studies), so a test can tell a stale copy from a
current one without running the notebook again.

nbclient runs them (the same kernel Jupyter uses, top to bottom); nbconvert writes the
HTML (JupyterLab's own look, figures embedded as PNG).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from lab.inspect.kernel import kernel_file_of
from lab.paths import PROJECT_ROOT
from lab.teach.notebook import DATA, PUBLISHING, STUDIES

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
HTML_DIR = NOTEBOOKS_DIR / "html"
DIGEST_META = "tcplab-made-from"
STYLE_SHEET = "notebook.css"
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
_CDN_SCRIPT = re.compile(r'<script[^>]*src="https://[^"]*"[^>]*>\s*</script>\s*', re.S)
_DIGEST = re.compile(rf'<meta name="{DIGEST_META}" content="sha256:([0-9a-f]{{64}})">')


def require_tools() -> None:
    """nbclient and nbconvert are the test extra's: a one-line LabError says so when missing."""
    import importlib.util

    from lab.errors import LabError

    missing = [name for name in ("nbclient", "nbconvert", "ipykernel") if importlib.util.find_spec(name) is None]
    if missing:
        raise LabError(f"{', '.join(missing)} not installed here: .venv/bin/pip install -e '.[test]'")


def notebooks() -> list[Path]:
    """The numbered study notebooks, in order."""
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))


def html_of(notebook: Path, folder: Path = HTML_DIR) -> Path:
    return folder / f"{notebook.stem}.html"


def made_from(notebook: Path) -> str:
    """sha256 of what the executed copy shows: the notebook's cells and the bundled captures
    (with their kernel samples) it studies. Outputs and execution counts are left out:
    they are what running makes, not what it is made from."""
    import nbformat

    digest = hashlib.sha256()
    for cell in nbformat.read(notebook, as_version=4).cells:
        digest.update(f"{cell.cell_type}\0{cell.source}\0".encode())
    for bundled in STUDIES[notebook.name[:2]]:
        capture = DATA / bundled
        for path in (capture, kernel_file_of(capture)):
            if path is not None and path.exists():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def recorded_digest(html: Path) -> str | None:
    """The digest an executed copy was stamped with, or None (no copy, or not one of ours)."""
    if not html.is_file():
        return None
    found = _DIGEST.search(html.read_text(encoding="utf-8", errors="replace"))
    return found[1] if found else None


def execute(notebook: Path, timeout: int = 600):
    """The notebook run top to bottom in its folder on its bundled captures, as a learner
    without a lab sees it: cells that need the running lab say so and are skipped."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    book = nbformat.read(notebook, as_version=4)
    chosen = {name: value for name, value in os.environ.items() if not name.startswith("TCPLAB_PCAP")}
    env = {**chosen, PUBLISHING: "1"}
    # The kernel talks to us over Unix sockets (ipc), not TCP on loopback: ipykernel warned "Kernel is
    # running over TCP without encryption" once per notebook, nine lines the learner need not read.
    # An absolute path for the sockets: the kernel runs in the notebook's folder, not ours.
    with tempfile.TemporaryDirectory(prefix="tcplab-kernel-") as sockets:
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        try:
            NotebookClient(book, km=kernel, timeout=timeout,
                           resources={"metadata": {"path": str(notebook.parent)}}).execute(env=env)
        finally:
            if kernel.has_kernel:       # a kernel manager we made is ours to stop (nbclient stops only its own)
                kernel.shutdown_kernel()
    return book


def to_html(book, digest: str) -> tuple[str, str]:
    """An executed notebook as an HTML page stamped with what it was made from, and the
    page's style sheet.

    nbconvert puts JupyterLab's 260 KB of CSS into every page; the pages share one file
    instead. It also loads require.js and MathJax from a CDN, which the notebooks do not
    use (no widgets, no formulas): a page that reads the same offline loads nothing.
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    page, _ = exporter.from_notebook_node(book)
    head, body = page.split("</head>", 1)
    css = "\n".join(_STYLE.findall(head))
    head = _CDN_SCRIPT.sub("", _STYLE.sub("", head))
    head = head.replace("<head>", f'<head>\n<meta name="{DIGEST_META}" content="sha256:{digest}">\n'
                                  f'<link rel="stylesheet" href="{STYLE_SHEET}">', 1)
    return f"{head}</head>{body}", css


def publish(folder: Path = HTML_DIR, chosen: list[Path] | None = None, progress=None) -> list[Path]:
    """Run each notebook and write its HTML copy to ``folder``; the paths written.

    ``progress`` is called with each notebook before it runs (the task shows it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in chosen or notebooks():
        if progress:
            progress(notebook)
        html = html_of(notebook, folder)
        page, css = to_html(execute(notebook), made_from(notebook))
        html.write_text(page, encoding="utf-8")
        (folder / STYLE_SHEET).write_text(css, encoding="utf-8")
        written.append(html)
    return written


def stale(folder: Path = HTML_DIR) -> list[Path]:
    """The notebooks whose copy in ``folder`` is missing or was made from something else."""
    return [notebook for notebook in notebooks() if recorded_digest(html_of(notebook, folder)) != made_from(notebook)]
