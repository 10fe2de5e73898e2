"""Which capture each notebook studies, from `invoke notebook --pcap` values, checked before JupyterLab starts."""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError


def capture_variables(pcaps: list[str]) -> dict[str, str]:
    """The environment that hands each notebook its capture, from ``--pcap`` values.

    ``04=FILE`` (a notebook) or ``zero-window=FILE`` (one of the captures a notebook
    studies, for 07 and 08, which study three) must fit what that notebook studies,
    or the task stops here in one line, before JupyterLab starts. A bare ``FILE`` goes
    to every notebook it fits, and the learner is told which.
    """
    from lab.teach.notebook import STUDIES, need_of, variable_for
    from lab.terminal import say

    env: dict[str, str] = {}
    for value in pcaps:
        key, _, file = value.partition("=")
        if not file or not _is_key(key):
            key, file = "", value
        path = _existing(file)
        if not key:
            fits = [number for number, kinds in STUDIES.items() if any(_fits(path, kind, file) for kind in kinds)]
            if not fits:
                raise LabError(f"{file} fits no notebook (each studies its own kind of capture): "
                               "name one with --pcap NN=FILE to hear what it lacks")
            say(f"{file}: studied by notebook{'s' if len(fits) > 1 else ''} {', '.join(fits)}; "
                "the others study their bundled captures")
            env["TCPLAB_PCAP"] = str(path)
            continue
        for bundled in _captures_named(key):
            _, what, how = need_of(bundled)
            if not _fits(path, bundled, file):
                raise LabError(f"{file} lacks what {_studied_by(bundled)} studies ({what}); make one with: {how}")
            env[variable_for(bundled)] = str(path)
    return env


def _fits(path: Path, bundled: str, file: str) -> bool:
    """Whether the capture has what the notebooks studying ``bundled`` need; a file that is
    no capture at all is one line that names it."""
    from lab.teach.notebook import need_of

    try:
        return need_of(bundled)[0](path)
    except LabError as error:
        raise LabError(f"{file}: {error}") from None


def _is_key(key: str) -> bool:
    from lab.teach.notebook import STUDIES

    return key in STUDIES or any(key == Path(kind).stem for kinds in STUDIES.values() for kind in kinds)


def _captures_named(key: str) -> tuple[str, ...]:
    """The bundled capture a key stands for: a notebook's only one, or the one named."""
    from lab.teach.notebook import STUDIES

    if key not in STUDIES:
        return (f"{key}.pcapng",)
    kinds = STUDIES[key]
    if len(kinds) > 1:
        names = ", ".join(f"--pcap {Path(kind).stem}=FILE" for kind in kinds)
        raise LabError(f"notebook {key} studies {len(kinds)} captures: name which, with {names}")
    return kinds


def _studied_by(bundled: str) -> str:
    from lab.teach.notebook import STUDIES

    numbers = [number for number, kinds in STUDIES.items() if bundled in kinds]
    return f"notebook{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"


def _existing(file: str) -> Path:
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise LabError(f"no capture at {file}: make one with invoke capture, or name an existing file")
    return path
