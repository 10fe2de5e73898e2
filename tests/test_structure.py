"""The tree keeps its shape: layers as folders, no import cycles, and a lab that takes new roles as data."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from lab.host.settings import from_config
from lab.host.topology import ROLES, Role, Topology
from tests.helpers import ROOT

LAB_DIR = ROOT / "lab"
INSIDE_ALLOWED = {"lab", "scapy"}   # besides the standard library: the image has nothing else


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth in the file (deferred imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def lab_modules() -> dict[str, Path]:
    return {module_name(path): path for path in LAB_DIR.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the lab modules it imports (``from lab.x import y`` counts y only if y is a module)."""
    modules = lab_modules()
    return {name: {imported for imported in imports_of(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports in ``graph``, as a list of modules, or None.

    A package's __init__ importing its own modules is how packages work, not a cycle.
    """
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> list[str] | None:
        if node in trail:
            return trail[trail.index(node):] + [node]
        if node in done:
            return None
        for imported in sorted(graph.get(node, ())):
            if not imported.startswith(node + "."):
                cycle = visit(imported, trail + [node])
                if cycle:
                    return cycle
        done.add(node)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_lab_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None


# Data flows one way: a package imports only packages below it (deferred imports count).
RANKS = {"lab.inside": 1, "lab.client": 1, "lab.server": 1, "lab.inspect": 2, "lab.scenarios": 3,
         "lab.host": 4, "lab.teach": 5, "lab.course": 6}
BASE = {"lab", "lab.errors", "lab.paths", "lab.terminal"}      # below everything, importing no package


def rank_of(module: str) -> int:
    return next((rank for package, rank in RANKS.items() if module == package or module.startswith(package + ".")),
                0 if module in BASE else 99)


def imports_up_a_layer(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} -> {imported}" for module, imports in graph.items() if module != "lab"
                  for imported in imports if rank_of(imported) > rank_of(module))


def test_no_import_runs_back_up_a_layer_deferred_ones_included():
    """tasks > course > teach > host > scenarios > inspect > inside: host once read the
    student's tag from course, teach recorded answers through course, host opened teach's
    notebooks, each behind an import inside a function."""
    assert all(rank_of(module) < 99 for module in lab_modules()), [m for m in lab_modules() if rank_of(m) == 99]
    assert imports_up_a_layer(import_graph()) == []


def test_the_rank_check_catches_a_deferred_import_up_a_layer(tmp_path):
    graph = {"lab.host.options": {"lab.course.variant"}, "lab.course.variant": {"lab.errors"}}
    assert imports_up_a_layer(graph) == ["lab.host.options -> lab.course.variant"]


def test_every_module_is_named_in_its_packages_map():
    """A package's docstring is its map: host's named 19 of its 26 modules, teach's 2 of 6."""
    import re

    for init in sorted(LAB_DIR.rglob("__init__.py")):
        package = init.parent
        text = ast.get_docstring(ast.parse(init.read_text())) or ""
        modules = [path.stem for path in package.glob("*.py") if path.stem != "__init__"]
        modules += [path.name for path in package.iterdir() if (path / "__init__.py").is_file()]
        missing = [name for name in modules if not re.search(rf"\b{re.escape(name)}\b", text)]
        assert not missing, f"{package.relative_to(ROOT)}/__init__.py does not name {missing}"


def test_every_error_a_user_sees_is_a_lab_error():
    from lab.course.archive import SubmissionError
    from lab.errors import LabError
    from lab.inspect.tcp import TooLarge
    from lab.teach.exercises import CaptureMismatch

    assert all(issubclass(error, LabError) for error in (SubmissionError, CaptureMismatch, TooLarge))


def test_no_test_skips_itself_on_a_missing_tool():
    """skipif(TSHARK is None) skipped in CI too; pytest.mark.needs fails there instead (conftest)."""
    for path in (ROOT / "tests").glob("test_*.py"):
        assert "skipif(" not in path.read_text() or path.name == "test_structure.py", path.name


def test_the_tree_passes_ruff():
    """pyflakes, bugbear and import order, as pyproject.toml configures them (the test extra installs ruff)."""
    import subprocess

    checked = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                              "lab", "tasks.py", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_the_tree_passes_mypy(tmp_path):
    """Strict in lab/inside and lab/inspect, function bodies checked elsewhere (pyproject.toml).
    It found, among 285 errors: lifecycle calling the swarm's .distribute on a plain Docker, a
    client that could return "no reply" as a reply, and task options typed int that could be None."""
    import subprocess

    checked = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-1000:]


def test_the_cycle_finder_finds_the_cycle_this_tree_once_had():
    graph = {"lab.host.impair": {"lab.host.orchestrate"}, "lab.host.orchestrate": {"lab.host.impair"},
             "lab.host": {"lab.host.impair"}}
    assert find_cycle(graph) == ["lab.host.impair", "lab.host.orchestrate", "lab.host.impair"]


def test_what_runs_inside_the_containers_imports_only_the_standard_library_and_scapy():
    inside = [LAB_DIR / "__init__.py", *sorted((LAB_DIR / "inside").glob("*.py"))]
    assert len(inside) >= 6
    for path in inside:
        for imported in imports_of(path):
            top = imported.split(".")[0]
            if top == "lab":
                assert imported == "lab" or imported.startswith("lab.inside"), f"{path.name} imports {imported}"
            else:
                assert top in sys.stdlib_module_names or top in INSIDE_ALLOWED, f"{path.name} imports {imported}"


def test_the_boundary_check_catches_a_forbidden_import(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    import numpy\n    from lab.host import docker\n")
    assert {"numpy", "lab.host", "lab.host.docker"} <= imports_of(sneaky)


def test_the_image_copies_only_lab_inside():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    copies = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copies == ["lab/__init__.py", "lab/inside"]


def test_the_speed_layer_is_a_folder_of_its_own_and_the_rules_do_not_need_it():
    assert {path.name for path in (LAB_DIR / "inspect" / "fast").glob("*.py")} >= {"bulk.py", "columns.py"}
    assert not any(name.startswith("lab.inspect.fast") for name in imports_of(LAB_DIR / "inspect" / "tcp.py"))


def test_a_third_container_role_is_a_data_entry():
    lab = from_config({"lab": {}}, "three")
    observer = Role("observer", "watches the server", joins="server", user="0",
                   capabilities=("NET_ADMIN",), memory="64m", pids=16, command=("python3", "-m", "lab.inside.observer"))
    topology = Topology(lab, (*ROLES, observer))
    args = topology.run_args("observer")
    joined = " ".join(args)
    assert args[:2] == ["run", "--rm"] and "--name three-observer" in joined
    assert "--network container:three-server" in joined
    assert "--label org.tcplab.lab=three --label org.tcplab.role=observer" in joined
    assert "--user 0 --cap-drop ALL --cap-add NET_ADMIN --security-opt no-new-privileges --read-only" in joined
    assert "--memory 64m --pids-limit 16" in joined
    assert args[-4:] == ["tcplab/lab:three", "python3", "-m", "lab.inside.observer"]
    assert "observer" in topology.role_names and observer not in topology.long_lived


def test_a_long_lived_host_added_as_data_is_started_by_up_and_targetable():
    lab = from_config({"lab": {}}, "three")
    router = Role("router", "forwards between the two", long_lived=True, on_network=True, command=("sleep", "infinity"))
    topology = Topology(lab, (*ROLES, router))
    assert [role.name for role in topology.long_lived] == ["server", "client", "router"]
    assert [role.name for role in topology.hosts] == ["server", "client", "router"]
    args = topology.run_args("router")
    assert args[:4] == ["run", "--detach", "--name", "three-router"]
    assert "--network three-net --network-alias router" in " ".join(args)


def test_every_container_of_the_lab_is_hardened_the_same_way():
    topology = Topology(from_config({"lab": {}}, None))
    for role in topology.roles:
        args = topology.run_args(role.name, joins="server" if not (role.on_network or role.joins) else None)
        joined = " ".join(args)
        for option in ("--cap-drop ALL", "--security-opt no-new-privileges", "--read-only", "--memory ",
                       "--pids-limit "):
            assert option in joined, f"{role.name} lacks {option}"
        assert "--privileged" not in joined


def test_the_lab_package_exports_every_name_it_promises_and_tasks_start_without_the_analysis():
    """lab.inspect loads its modules when a name is first asked for: `invoke up` imported numpy
    through lab.inspect.formats (140 ms of every task's start)."""
    import importlib
    import subprocess
    import sys

    inspect = importlib.import_module("lab.inspect")
    assert all(getattr(inspect, name) is not None for name in inspect.__all__)
    loaded = subprocess.run([sys.executable, "-c", "import sys, tasks; print('numpy' in sys.modules)"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "False", loaded.stderr
