"""The one place the lab calls docker: each command is echoed, each failure is one line.

Every docker command of the lab (the tasks, the image build, the notebooks' live
cells) goes through :class:`Docker`, which runs it with an invoke Context (so tests
can hand it an ``invoke.MockContext``) and echoes each command that does
something, so a learner can copy any step and run it by hand. Docker's own errors are turned into
one line that says what to do (engine not running, no permission, subnet in use,
...); anything unrecognised shows docker's last line of error output.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Sequence

from invoke import Context
from invoke.runners import Result

from lab.errors import LabError
from lab.host.engines import echo
from lab.host.engines.product import Product
from lab.host.engines.product import parse as parse_product

QUESTIONS = ("inspect", "logs", "ps", "images", "info", "version", "top", "ls")


def is_engine_address(endpoint: str) -> bool:
    """An engine is named by its address (unix://, tcp://, ssh://) or by a docker context's name."""
    return "://" in endpoint


def engine_args(endpoint: str | None) -> list[str]:
    """The docker CLI's words for another engine than its default: ``-H ADDRESS`` for an address,
    ``--context NAME`` for a docker context (which may hold TLS keys)."""
    if not endpoint:
        return []
    return ["-H", endpoint] if is_engine_address(endpoint) else ["--context", endpoint]


def engine_env(endpoint: str) -> dict[str, str]:
    """The same as the environment a docker CLI (or a task run as a subprocess) reads."""
    return {"DOCKER_HOST": endpoint} if is_engine_address(endpoint) else {"DOCKER_CONTEXT": endpoint}


def is_question(words: Sequence[str]) -> bool:
    """True for a docker command that only asks (``inspect``, ``network ls``, ...), changing nothing."""
    if words[:1] in (["-H"], ["--context"]):       # on one engine of several (lab.host.engines.lab_engines)
        words = words[2:]
    verb = words[1] if words[:1] in (["network"], ["image"], ["container"], ["volume"]) and len(words) > 1 else \
        (words[0] if words else "")
    return verb in QUESTIONS

NOT_INSTALLED = ("the docker command is not installed: install Docker "
                 "(Debian: apt-get install docker.io) and start its engine")

# How an engine refuses a subnet that overlaps one of its networks: Docker's words, then Podman's.
OVERLAP_WORDS = ("Pool overlaps with other one on this address space",
                 "is already used on the host or by another config")

# (what docker says, what the user should do). Checked in order.
KNOWN_ERRORS = [
    ("Cannot connect to the Docker daemon",
     "the Docker engine is not running: start it (systemctl start docker, or bash .ci/docker-engine as root)"),
    ("permission denied while trying to connect",
     "no permission to use Docker: add yourself to the docker group (usermod -aG docker $USER, then log in again) or run as root"),
    *((words, "the lab's subnet overlaps a network that exists: pick another with INVOKE_LAB_SUBNET or 'subnet' in "
       "invoke.yaml") for words in (OVERLAP_WORDS)),
    ("No such image",
     "the lab's image is missing: run 'invoke build' (or 'invoke up', which builds it)"),
    ("address already in use",
     "the port is already in use: pick another with INVOKE_LAB_PORT or 'port' in invoke.yaml"),
]


INTERRUPTED = (-2, 130)   # a docker command ended by SIGINT (killed by it, or exited 128 + 2)


class DockerError(LabError):
    """A docker command failed; the message is one line for the user."""


def explain(stderr: str, command: str) -> str:
    """One line for a failed docker command, from what docker printed."""
    for needle, advice in KNOWN_ERRORS:
        if needle.lower() in stderr.lower():
            return advice
    lines = [line.strip() for line in stderr.splitlines() if line.strip()
             and not line.strip().startswith(("Run 'docker", "See 'docker"))]    # docker's usage hint says nothing
    last = lines[-1].removeprefix("docker: ") if lines else "no error message"
    return f"'{command}' failed: {last}"


def without_rm(args: Sequence[str], cidfile: str) -> list[str]:
    """``run ... --rm ...`` as ``run --cidfile CIDFILE ...``: the container stays for its exit code,
    and CIDFILE names it for the lab to remove."""
    kept = [word for word in args if word != "--rm"]
    return [kept[0], "--cidfile", cidfile, *kept[1:]]


_PRODUCTS: dict[str | None, Product] = {}
"""Each engine's product, by its address or context (None: the CLI's default)."""


class RemovedWhenDone(subprocess.Popen):
    """A ``docker run`` process whose container the lab removes once it ends: the stand-in for
    ``--rm`` where the engine loses exit codes with it."""

    def __init__(self, argv: Sequence[str], remove: Callable[[], None], **options: Any) -> None:
        super().__init__(argv, **options)
        self.remove = remove
        self._removed = False

    def _done(self) -> None:
        if not self._removed:
            self._removed = True
            self.remove()

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._done()
        return code

    def poll(self) -> int | None:
        code = super().poll()
        if code is not None:
            self._done()
        return code


class Docker:
    """Runs docker commands through an invoke Context."""

    def __init__(self, c: Context, echo: bool = True, host: str | None = None) -> None:
        self.c = c
        self.echo = echo
        self.host = host          # another engine (docker -H HOST): a class's lab on a swarm node

    def run(self, args: Sequence[str], *, quiet: bool = False, check: bool = True,
            pty: bool = False, show_stderr: bool = False, echo: bool = True) -> Result:
        """Run ``docker ARGS``.

        ``quiet`` hides the output (we parse it); otherwise stdout is shown live and
        stderr kept for the error line, unless ``show_stderr`` (BuildKit's progress
        goes there). ``check`` turns a failure into a DockerError. ``echo=False``
        is for a question asked through ``docker run`` (a helper reading tc's qdiscs).
        """
        if self.removes_itself(args):
            return self.run_then_remove(args, quiet=quiet, check=check, pty=pty, show_stderr=show_stderr, echo=echo)
        args = [*engine_args(self.host), *args]
        command = shlex.join(["docker", *args])
        if pty or show_stderr:
            hide = None
        else:
            hide = "both" if quiet else "err"
        self._echo(command, shown=echo)
        result = self.c.run(command, echo=False, warn=True, hide=hide, pty=pty,
                            in_stream=None if pty else False)
        if result.exited == 127:
            raise DockerError(NOT_INSTALLED)
        if result.exited in INTERRUPTED and not (result.stderr or "").strip():
            raise KeyboardInterrupt      # Ctrl-C reached docker too: the task says "interrupted", not "failed"
        if check and result.exited != 0:
            raise DockerError(explain(result.stderr, command))
        if not check:
            for needle, advice in KNOWN_ERRORS[:2]:
                if needle.lower() in result.stderr.lower():
                    raise DockerError(advice)
        return result

    def product(self) -> Product:
        """Which engine this is (lab.host.engines.product), asked once per engine and process."""
        if self.host not in _PRODUCTS:
            ask = ["docker", *engine_args(self.host)]
            try:
                version = subprocess.run([*ask, "version", "--format", "{{json .Server}}"], capture_output=True,
                                         text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
                info = subprocess.run([*ask, "info", "--format", "{{json .}}"], capture_output=True, text=True,
                                      timeout=30, stdin=subprocess.DEVNULL).stdout
            except (OSError, subprocess.TimeoutExpired):
                version = info = ""
            _PRODUCTS[self.host] = parse_product(version, info)
        return _PRODUCTS[self.host]

    def removes_itself(self, args: Sequence[str]) -> bool:
        """``docker run --rm`` in the foreground on an engine that then loses the program's exit code."""
        return (bool(args) and args[0] == "run" and "--rm" in args and "--detach" not in args
                and self.product().loses_exit_code_of_removed)

    def run_then_remove(self, args: Sequence[str], **options: Any) -> Result:
        """``run`` without ``--rm``, then ``rm``: the exit code the program returned, and no container left."""
        with tempfile.TemporaryDirectory(prefix="tcplab-cid-") as folder:
            cidfile = os.path.join(folder, "id")
            try:
                return self.run(without_rm(args, cidfile), **options)
            finally:
                self.remove_by_cidfile(cidfile)

    def remove_by_cidfile(self, cidfile: str) -> None:
        try:
            container = open(cidfile).read().strip()
        except OSError:
            return                  # never made
        if container:
            self.run(["rm", "--force", container], quiet=True, check=False, echo=False)

    def print_command(self, args: Sequence[str]) -> None:
        """Echo ``docker ARGS`` that ran quietly (one of several tries) as if it had been echoed."""
        self._echo(shlex.join(["docker", *args]))

    def _echo(self, command: str, shown: bool = True) -> None:
        """A command that does something: in the log, and on screen unless ``shown`` is False
        (housekeeping), one line at a time across threads (lab.host.engines.echo). The lab's
        questions to docker (inspect, logs while it waits, ...) are its own business, not steps
        to repeat: neither."""
        if is_question(command.split()[1:]):
            return
        echo.record(command)
        if self.echo and shown:
            echo.show(command, self.verbose)

    @property
    def verbose(self) -> bool:
        """--verbose (or INVOKE_LAB_VERBOSE): every command whole on the terminal."""
        try:
            return bool((self.c.config.get("lab") or {}).get("verbose"))
        except AttributeError:
            return False

    def popen(self, args: Sequence[str], stdout: IO[bytes] | int | None = None, stdout_name: str | None = None,
              stderr: int | None = subprocess.PIPE) -> subprocess.Popen:
        """Start ``docker ARGS`` in the background and return at once.

        ``stdout`` may be a file or a pipe (a capture's stream, which the caller
        writes to a file: too much for memory, and binary; the echo then shows the
        redirection to ``stdout_name``, so the command can still be run by hand); by
        default the output is the user's. stderr is a
        pipe for the caller to read unless ``stderr=None``. It runs in a session
        of its own, so a Ctrl-C at the terminal reaches the lab, not it: the lab
        stops it the way it must be stopped (the engine hands over its ring first).
        """
        remove: Callable[[], None] | None = None
        if self.removes_itself(args):
            folder = tempfile.mkdtemp(prefix="tcplab-cid-")
            cidfile = os.path.join(folder, "id")
            args = without_rm(args, cidfile)

            def remove() -> None:
                self.remove_by_cidfile(cidfile)
                shutil.rmtree(folder, ignore_errors=True)
        args = [*engine_args(self.host), *args]
        redirect = f" > {shlex.quote(stdout_name)}" if stdout_name else ""
        self._echo(f"{shlex.join(['docker', *args])}{redirect}")
        options: dict[str, Any] = {"stdout": stdout, "stderr": stderr, "stdin": subprocess.DEVNULL,
                                   "start_new_session": True}
        try:
            if remove is not None:
                return RemovedWhenDone(["docker", *args], remove, **options)
            return subprocess.Popen(["docker", *args], **options)
        except FileNotFoundError:
            raise DockerError(NOT_INSTALLED) from None

    def interrupt(self, container: str) -> None:
        """SIGINT to a container's program: a capture engine hands over what is left in its ring,
        a sampler its last samples, and each reports its counters (housekeeping: logged, not shown)."""
        self.run(["kill", "--signal", "INT", container], quiet=True, check=False, echo=False)

    def wait_or_remove(self, container: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        """Wait for a container started with :meth:`popen` to end; if it will not, remove it."""
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.run(["rm", "--force", container], quiet=True, check=False)
            proc.wait(timeout)

    def run_logged(self, args: Sequence[str], title: str, log_name: str, step_of, verbose: bool = False) -> None:
        """``docker ARGS`` that prints a lot (a build): one moving line and a log file
        (lab.host.progress), or all of it with ``verbose``; a failure is its last lines and the log."""
        from lab.host.progress import log_file, run_logged

        self._echo(shlex.join(["docker", *args]))
        log_path = log_file(log_name)
        try:
            code, tail = run_logged(["docker", *args], title, log_path, step_of, verbose, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DockerError(NOT_INSTALLED) from None
        if code:
            if tail:
                print(tail, file=sys.stderr)
            raise DockerError(f"{explain(tail, shlex.join(['docker', *args[:1]]))} (the whole output: {log_path})")

    def import_tree(self, folder: str, changes: Sequence[str], tag: str) -> None:
        """``tar -C FOLDER -c . | docker import --change ... - TAG``: a folder becomes an image."""
        args = ["import", *(option for change in changes for option in ("--change", change)), "-", tag]
        self._echo(f"tar -C {shlex.quote(folder)} -c . | {shlex.join(['docker', *args])}")
        tar = subprocess.Popen(["tar", "-C", folder, "-c", "."], stdout=subprocess.PIPE)
        try:
            result = subprocess.run(["docker", *args], stdin=tar.stdout, capture_output=True, text=True)
        except FileNotFoundError:
            raise DockerError(NOT_INSTALLED) from None
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
        if result.returncode != 0 or tar.returncode != 0:
            raise DockerError(explain(result.stderr, f"docker import ... {tag}"))

    def import_archive(self, archive: str, changes: Sequence[str], tag: str) -> None:
        """``docker import --change ... ARCHIVE TAG``: a root filesystem's tarball becomes an image."""
        self.run(["import", *(option for change in changes for option in ("--change", change)), archive, tag],
                 quiet=True)

    @staticmethod
    def gather(*calls: Callable[[], Any]) -> list[Any]:
        """Call independent functions (each running docker commands) at once; their results in order."""
        with ThreadPoolExecutor(max_workers=len(calls) or 1) as pool:
            return [future.result() for future in [pool.submit(call) for call in calls]]

    def inspect(self, names: Sequence[str], kind: str | None = None) -> list[dict[str, Any]]:
        """``docker inspect`` the objects that exist among ``names`` (missing ones are left out)."""
        if not names:
            return []
        args = ["inspect"] + ([f"--type={kind}"] if kind else []) + list(names)
        result = self.run(args, quiet=True, check=False)
        try:
            return json.loads(result.stdout or "[]")
        except json.JSONDecodeError:
            return []

    def subnets_in_use(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The subnets of every network this engine has (a lab's, the user's, Docker's own)."""
        listed = self.run(["network", "ls", "-q"], quiet=True, check=False, echo=False).stdout.split()
        found = []
        for network in self.inspect(sorted(set(listed)), kind="network"):
            for config in (network.get("IPAM") or {}).get("Config") or []:
                try:
                    found.append(ipaddress.ip_network(config.get("Subnet", ""), strict=False))
                except ValueError:
                    continue
        return found

    def ids(self, kind: str, label: str) -> list[str]:
        """IDs of the networks or images that carry ``label``."""
        listing = {"network": ["network", "ls", "-q"], "image": ["image", "ls", "-q"]}[kind]
        result = self.run([*listing, "--filter", f"label={label}"], quiet=True)
        return sorted(set(result.stdout.split()))

    def containers(self, label: str, role_label: str, roles: Sequence[str],
                   also: Sequence[str] = ()) -> dict[str, dict[str, str]]:
        """The containers with ``label`` whose ``role_label`` is one of ``roles``: id -> {label: value}
        of the role label and the ``also`` labels."""
        wanted = [role_label, *also]
        fields = "\t".join(f'{{{{.Label "{name}"}}}}' for name in wanted)
        result = self.run(["ps", "--all", "--filter", f"label={label}", "--format", f"{{{{.ID}}}}\t{fields}"],
                          quiet=True)
        found = {}
        for line in result.stdout.splitlines():
            container, *values = line.split("\t")
            labels = dict(zip(wanted, values))
            if labels.get(role_label) in roles:
                found[container] = labels
        return dict(sorted(found.items()))
