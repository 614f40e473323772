"""The package's shape: no import circles between modules or between packages, counting imports inside
functions too (a lazy import hides a circle without removing it); packages on floors, imports running down
only; files and functions of a readable size; imports inside functions only to defer an optional dependency.
And the tests': no test module imports another or conftest; what they share is in tests/helpers/."""

from __future__ import annotations

import ast
import re
import warnings
from collections import defaultdict
from pathlib import Path

from momentum_gs.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "momentum_gs"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports (anywhere in the file), resolved to existing modules."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("momentum_gs"):
                for alias in node.names:  # `from pkg import module` names a module; else the package itself
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("momentum_gs"))
        graph[name] = {t for t in targets if t in modules and t != name}
    # the command line imports the module of the command given by name (momentum_gs.cli.command_module)
    graph["momentum_gs.cli"] |= {f"momentum_gs.commands.{command}" for command in COMMANDS}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle (as a list of modules, first = last), or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "momentum_gs.trained" in graph["momentum_gs.eval.evaluate"]  # the graph sees real edges
    assert find_cycle(graph) == []
    assert "momentum_gs.commands.train" in graph["momentum_gs.cli"]  # the commands the table names


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


# The floors, lowest first. A package may import its own floor and the floors below (top-level modules such as
# errors.py count as packages of their own; "momentum_gs" is the package's __init__, its version).
FLOORS = [
    {"momentum_gs", "errors", "ranges", "estimate", "io", "draw"},  # plumbing every floor uses
    {"config"},
    {"data"},
    {"render"},
    {"model"},
    {"losses"},
    {"partition"},  # the coarse rule renders a coarse model: model and losses are below
    {"trained"},  # a trained run read back: config, checkpoint, partition and model together
    {"eval", "mesh"},
    {"view"},
    {"train", "export"},  # the viewer of a training sits below both; the export scores with eval's metrics
    {"maps"},  # the orthophoto bakes as the export does
    {"site"},  # mgs run: every stage's work, from the SfM to the page
    {"commands"},
    {"cli"},
]
UP_ALLOWED: set[tuple[str, str]] = set()  # (from, to) package arrows that may run up the floors


def package_of(module: str) -> str:
    """``momentum_gs.data.sfm.run`` → ``data``; ``momentum_gs`` → ``momentum_gs``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """package → package it imports → the module arrows (``a -> b``) that make that import."""
    packages: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for module, targets in graph.items():
        packages[package_of(module)]  # every package is a node, importing or not
        for target in targets:
            if package_of(target) != package_of(module):
                packages[package_of(module)][package_of(target)].add(f"{module} -> {target}")
    return packages


def floor_of(package: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if package in floor)


def test_every_package_is_on_a_floor():
    unplaced = set(package_graph(import_graph())) - set().union(*FLOORS)
    assert not unplaced, f"place these packages on a floor of FLOORS: {sorted(unplaced)}"


def test_the_packages_have_no_import_circle():
    packages = package_graph(import_graph())
    assert find_cycle({p: set(targets) for p, targets in packages.items()}) == []


def test_imports_run_down_the_floors():
    packages = package_graph(import_graph())
    up = {(a, b): arrows for a, targets in packages.items() for b, arrows in targets.items()
          if floor_of(b) > floor_of(a) and (a, b) not in UP_ALLOWED}
    assert not up, "imports running up the floors:\n" + "\n".join(sorted(set().union(*up.values())))


def test_the_floor_check_sees_an_arrow_up():
    assert floor_of("data") < floor_of("partition")
    packages = package_graph({"momentum_gs.data.x": {"momentum_gs.partition.y"}, "momentum_gs.partition.y": set()})
    assert packages["data"]["partition"] == {"momentum_gs.data.x -> momentum_gs.partition.y"}


MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
# Past this a file is named in a warning: split it where a concept ends before it reaches the limit, rather than
# squeeze it under.
WARN_FILE_LINES = 350
# What a function may import inside itself: optional dependencies, or ones heavy to import that only some runs
# need, each with the reason it waits.
DEFERRED = {
    "gsplat": "optional (CUDA): pip install .[cuda]",
    "piexif": "optional (sfm): pip install .[sfm]",
    "pyproj": "optional (maps, GCPs in other projections): pip install .[maps]",
    "rasterio": "optional (maps: GeoTIFFs): pip install .[maps]",
    "laspy": "optional (maps: LAS point clouds): pip install .[maps]",
    "viser": "optional (viewer): pip install .[viewer]",
    "websockets": "comes with viser",
    "wandb": "optional (logging)",
    "torch.utils.tensorboard": "imports TensorBoard's stack, only when logging to it",
    "torch.utils.cpp_extension": "imports the compiler tool chain, only when the CPU kernels are built",
    "ninja": "the build tool's pip wheel, only when the CPU kernels are built",
    "fcntl": "POSIX only: the kernels' build lock",
    "resource": "POSIX only: the training probe's peak memory",
}


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_file_or_function_is_too_long():
    long_files, long_functions = [], []
    for path in _sources():
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}: {node.name}, {lines} lines")
    assert not long_files and not long_functions, "\n".join(long_files + long_functions)


class LongFileWarning(UserWarning):
    """Package files over ``WARN_FILE_LINES`` lines: near ``MAX_FILE_LINES``, the limit the test above holds."""


def files_over(lines: int) -> list[str]:
    """``path: N lines`` for each package file of more than ``lines`` lines."""
    counts = {path.relative_to(PACKAGE): path.read_text().count("\n") for path in _sources()}
    return [f"{path}: {count} lines" for path, count in counts.items() if count > lines]


def test_files_near_the_limit_are_named():
    long_files = files_over(WARN_FILE_LINES)
    if long_files:
        warnings.warn(LongFileWarning(f"{len(long_files)} file(s) over {WARN_FILE_LINES} lines (the limit is "
                                      f"{MAX_FILE_LINES}); split them by concept:\n" + "\n".join(long_files)))


def test_the_long_file_check_names_a_file():
    lines = (PACKAGE / "cli.py").read_text().count("\n")
    assert f"cli.py: {lines} lines" in files_over(lines - 1)
    assert f"cli.py: {lines} lines" not in files_over(lines)


def function_level_imports(tree: ast.Module) -> list[str]:
    """The modules imported inside the functions of ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.level == 0:
                    found.append(sub.module)
                elif isinstance(sub, ast.Import):
                    found.extend(a.name for a in sub.names)
    return found


def test_functions_import_only_deferred_dependencies():
    hidden = [f"{path.relative_to(PACKAGE)}: {module}" for path in _sources()
              for module in function_level_imports(ast.parse(path.read_text()))
              if not any(module == d or module.startswith(d + ".") for d in DEFERRED)]
    assert not hidden, "imports inside functions (move them to the top, or defer a dependency in DEFERRED):\n" + \
        "\n".join(hidden)


def test_the_import_check_sees_a_function_level_import():
    tree = ast.parse("import os\ndef f():\n    from momentum_gs.config import Config\n    import viser\n")
    assert function_level_imports(tree) == ["momentum_gs.config", "viser"]


TESTS = PACKAGE.parent / "tests"


def imported_test_modules(tree: ast.Module) -> list[str]:
    """The test modules (``test_*``) and ``conftest`` that ``tree`` imports, anywhere in it."""
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""  # `from . import conftest` has no module
            imported.append(base)
            imported.extend(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
    return [name for name in imported if name and re.fullmatch(r"test_\w*|conftest", name.split(".")[-1])]


def test_test_modules_import_no_other_test_module_nor_conftest():
    found = [f"{path.relative_to(TESTS.parent)}: {module}" for path in sorted(TESTS.rglob("*.py"))
             for module in imported_test_modules(ast.parse(path.read_text()))]
    assert not found, "imports of a test module or of conftest (move what they share to tests/helpers/; " \
        "fixtures stay in conftest.py and are asked for by name):\n" + "\n".join(found)


def test_the_test_import_check_sees_a_test_module_imported():
    tree = ast.parse("from tests.helpers.cli import mgs\nfrom tests.test_cli import mgs\nimport tests.test_data\n"
                     "def f():\n    from conftest import TINY_OVERRIDES\n    from tests import test_table\n")
    assert sorted(imported_test_modules(tree)) == ["conftest", "tests.test_cli", "tests.test_data", "tests.test_table"]


def test_the_readme_layout_table_matches_the_tree():
    readme = (PACKAGE.parent / "README.md").read_text()
    rows = set(re.findall(r"^\| `(momentum_gs/[\w/.]+)` \|", readme, re.M))
    packages = {f"momentum_gs/{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages - rows == set(), "packages the README's layout table does not name"
    assert {row for row in rows if not (PACKAGE.parent / row).exists()} == set(), "rows naming nothing"


# ---- settings travel as values --------------------------------------------------------------------------------
# Where the package may read the environment: config/ (environment.py names every variable) and the command line.
ENVIRONMENT_READERS = ("config/", "cli.py")


def environment_reads(source: str) -> list[int]:
    """Lines of ``source`` that read the environment: ``os.environ``, ``os.environb``, ``os.getenv``, or
    ``from os import environ/getenv``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                and node.attr in ("environ", "environb", "getenv", "getenvb")):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "environb", "getenv", "getenvb") for alias in node.names):
                lines.append(node.lineno)
    return sorted(lines)


def found_in_package(find, allowed: tuple[str, ...]) -> list[str]:
    """``path:line`` of every line ``find(source)`` names in the package's files, but those whose path (relative
    to the package) starts with one of ``allowed``."""
    found = []
    for path in _sources():
        where = path.relative_to(PACKAGE).as_posix()
        if not where.startswith(allowed):
            found += [f"{where}:{line}" for line in find(path.read_text())]
    return found


def test_the_environment_is_read_only_in_config_and_the_command_line():
    found = found_in_package(environment_reads, ENVIRONMENT_READERS)
    assert not found, ("the environment read outside config/ and cli.py (add the variable to "
                       "config/environment.py and read it there):\n" + "\n".join(found))


def argv_builds(source: str) -> list[int]:
    """Lines of ``source`` that build a command line of the package's own, to be parsed again: an
    ``argparse.Namespace`` made by hand, a parser's ``parse_args``/``parse_known_args``, the name of the command
    line's module, or a call of its ``main``."""
    tree, lines = ast.parse(source), []
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("Namespace", "parse_args", "parse_known_args"):
                lines.append(node.lineno)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and "momentum_gs.cli" in node.value
              and id(node) not in docstrings):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "momentum_gs.cli":
            lines.append(node.lineno)
    return sorted(lines)


def test_no_command_line_is_built_again_inside_the_package():
    found = found_in_package(argv_builds, ("cli.py",))
    assert not found, ("a command line built inside the package (hand the value on instead, e.g. a "
                       "TrainRequest):\n" + "\n".join(found))


def test_the_guards_see_what_they_forbid():
    assert environment_reads("import os\nx = os.environ.get('A')\ny = os.getenv('B')\n") == [2, 3]
    assert environment_reads("from os import environ\n") == [1]
    assert environment_reads("import os\nos.cpu_count()\n") == []
    built = ("import argparse, sys\nargs = argparse.Namespace(config=None)\n"
             "argv = [sys.executable, '-m', 'momentum_gs.cli', 'train']\nparser.parse_args(argv)\n")
    assert argv_builds(built) == [2, 3, 4]
    assert argv_builds("import subprocess\nsubprocess.run(['npm', 'root', '-g'])\n") == []
