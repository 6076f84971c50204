"""The package rules of DESIGN.md, checked from the code's own imports (``ast``, nothing is
imported), so they stay true:

- ``storage/`` imports nothing from the other packages;
- ``builder/`` imports ``runtime/`` only from the modules that execute RUN, and nothing from
  ``registry/`` (the builder does not speak HTTP; pushing is the CLI's job);
- ``registry/server/`` imports only ``registry/server/``, ``registry/auth/`` and ``storage/`` (and
  the shared leaves ``registry/routes.py``, the URL table of server and client, and
  ``registry/config_values.py``, ConfigError and durations for both configs, which import only ``storage/``);
- ``registry/auth/`` imports neither ``registry/server/``, ``registry/client/`` nor ``hoist/`` (the
  server uses auth, not the other way round);
- ``registry/client/`` imports neither ``registry/server/`` nor ``hoist/``;
- ``runtime/`` imports neither ``builder/``, ``registry/``, ``compose/`` nor ``hoist/``;
- no import cycle between modules.

Every import counts for the package rules, including those inside functions and under
``if TYPE_CHECKING:``. The cycle check follows only the imports that run when a module is
imported (module level, not under TYPE_CHECKING): an import inside a function runs later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "registry", "builder", "runtime", "compose", "hoist")

# The builder modules that execute RUN steps and so may import runtime/. None yet: the builder
# executor adds its module here (and only that one).
BUILDER_MODULES_RUNNING_RUN: frozenset[str] = frozenset({"builder.execute"})  # runs RUN through runtime/step.py

# Leaf modules of registry/ shared by the server, the client and auth (they import only storage/).
REGISTRY_SHARED_LEAVES = frozenset({"registry.routes", "registry.config_values"})

# Edges that break a rule today because of work in progress on another branch. Each entry is
# temporary: the lead deletes it when that branch is merged (the test fails on a stale entry, so
# it cannot be forgotten). Anything not listed here fails the test.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    eager: bool  # runs when the importer is imported (module level, not under TYPE_CHECKING)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else ():
            modules[module_name(root, path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom, modules: dict[str, Path]) -> list[str]:
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # ``from pkg import mod`` imports the module pkg.mod when there is one, else a name of pkg.
    targets = [f"{prefix}.{alias.name}" for alias in node.names if f"{prefix}.{alias.name}" in modules]
    if len(targets) < len(node.names):
        targets.append(prefix)
    return targets


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, eager: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(name, alias.name, child.lineno, eager)
            elif isinstance(child, ast.ImportFrom):
                for target in _resolve(name, is_package, child, modules):
                    yield Import(name, target, child.lineno, eager)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), eager)
            else:
                yield from visit(child, eager)

    yield from visit(tree, True)


def all_imports(root: Path = REPO) -> tuple[dict[str, Path], list[Import]]:
    modules = find_modules(root)
    return modules, [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def rule_broken(imp: Import) -> str | None:
    """Which package rule this import breaks, or None. Only first-party targets matter."""
    src, dst = imp.importer, imp.target
    if not any(_within(dst, p) for p in PACKAGES):
        return None
    if _within(src, "storage") and not _within(dst, "storage"):
        return "storage/ imports nothing from the other packages"
    if _within(src, "builder"):
        if _within(dst, "registry"):
            return "builder/ does not import registry/ (it does not speak HTTP)"
        if _within(dst, "runtime") and src not in BUILDER_MODULES_RUNNING_RUN:
            return "builder/ imports runtime/ only from BUILDER_MODULES_RUNNING_RUN"
    if src in REGISTRY_SHARED_LEAVES and not _within(dst, "storage"):
        return f"{src} is a leaf shared by the registry packages: it imports only storage/"
    if _within(src, "registry.server") and dst not in REGISTRY_SHARED_LEAVES and not any(
            _within(dst, p) for p in ("registry.server", "registry.auth", "storage")):
        return "registry/server/ imports only registry/server/, registry/auth/ and storage/"
    if _within(src, "registry.auth") and any(
            _within(dst, p) for p in ("registry.server", "registry.client", "hoist")):
        return "registry/auth/ imports neither registry/server/, registry/client/ nor hoist/"
    if _within(src, "registry.client") and (_within(dst, "registry.server") or _within(dst, "hoist")):
        return "registry/client/ imports neither registry/server/ nor hoist/"
    if _within(src, "runtime") and any(_within(dst, p) for p in ("builder", "registry", "compose", "hoist")):
        return "runtime/ imports neither builder/, registry/, compose/ nor hoist/"
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself),
    by Tarjan's algorithm (iterative, so deep graphs cannot overflow the stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def import_graph(modules: dict[str, Path], imports: list[Import], skip: Iterable[tuple[str, str]] = ()
                 ) -> dict[str, set[str]]:
    skipped = set(skip)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports:
        if imp.eager and imp.target in modules and imp.target != imp.importer \
                and (imp.importer, imp.target) not in skipped:
            graph[imp.importer].add(imp.target)
    return graph


def violations(root: Path = REPO, known: dict[tuple[str, str], str] | None = None) -> list[str]:
    known = KNOWN_VIOLATIONS if known is None else known
    modules, imports = all_imports(root)
    problems = []
    for imp in imports:
        rule = rule_broken(imp)
        if rule and (imp.importer, imp.target) not in known:
            problems.append(f"{modules[imp.importer].relative_to(root)}:{imp.line}: "
                            f"{imp.importer} imports {imp.target}: {rule}")
    for component in cycles(import_graph(modules, imports, skip=known)):
        problems.append("import cycle: " + " <-> ".join(component))
    return problems


def test_the_code_keeps_the_package_rules() -> None:
    problems = violations()
    assert not problems, "\n".join(problems)


def test_known_violations_are_still_real() -> None:
    """A KNOWN_VIOLATIONS entry whose edge is gone is stale: delete it."""
    modules, imports = all_imports()
    edges = {(imp.importer, imp.target) for imp in imports}
    graph = import_graph(modules, imports)
    in_cycle = {m for component in cycles(graph) for m in component}
    stale = [f"{src} -> {dst} ({why})" for (src, dst), why in KNOWN_VIOLATIONS.items()
             if (src, dst) not in edges
             or (rule_broken(Import(src, dst, 0, True)) is None and not {src, dst} <= in_cycle)]
    assert not stale, "stale KNOWN_VIOLATIONS entries: " + "; ".join(stale)


def test_every_package_is_seen() -> None:
    modules, imports = all_imports()
    for package in ("storage", "registry.server", "registry.client", "registry.auth", "builder", "runtime",
                    "hoist"):
        assert package in modules
    assert any(imp.importer.startswith("builder.") and imp.target.startswith("storage") for imp in imports)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


@pytest.mark.parametrize("rel,source,rule", [
    ("storage/x.py", "from registry.server import app\n", "storage/"),
    ("storage/x.py", "def f():\n    import hoist.cli\n", "storage/"),
    ("storage/x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import runtime.spec\n", "storage/"),
    ("builder/x.py", "from runtime import spec\n", "BUILDER_MODULES_RUNNING_RUN"),
    ("builder/x.py", "import registry.client.pull\n", "builder/ does not import registry/"),
    ("registry/server/x.py", "from registry.client import pull\n", "registry/server/"),
    ("registry/server/x.py", "from ..client import pull\n", "registry/server/"),
    ("registry/server/x.py", "from hoist import paths\n", "registry/server/"),
    ("registry/client/x.py", "import registry.server.app\n", "registry/client/"),
    ("registry/auth/x.py", "def f():\n    from registry.server.config import parse_duration\n",
     "registry/auth/"),
    ("registry/routes.py", "from registry.server import app\n", "leaf"),
    ("runtime/x.py", "def f():\n    from builder import layers\n", "runtime/"),
    ("runtime/x.py", "from registry.client import pull\n", "runtime/"),
])
def test_each_rule_catches_its_violation(tmp_path: Path, rel: str, source: str, rule: str) -> None:
    root = _tree(tmp_path, {rel: source, "registry/server/app.py": "", "registry/client/pull.py": "",
                            "runtime/spec.py": "", "hoist/cli.py": "", "hoist/paths.py": "",
                            "builder/layers.py": ""})
    problems = violations(root, known={})
    assert len(problems) == 1 and rule in problems[0], problems


def test_allowed_imports_are_not_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "storage/a.py": "import json\nfrom . import b\n", "storage/b.py": "",
        "registry/server/app.py": "from registry.auth import tokens\nfrom storage import a\nimport aiohttp\n"
                                  "from registry.routes import PATTERNS\n",
        "registry/routes.py": "from urllib.parse import quote\n",
        "registry/client/client.py": "from registry import routes\n",
        "registry/auth/tokens.py": "",
        "registry/client/pull.py": "from storage import a\n",
        "builder/layers.py": "from storage import b\n",
        "runtime/spec.py": "from storage.a import x\n",
        "hoist/cli.py": "from registry.server import app\nfrom runtime import spec\nfrom builder import layers\n",
    })
    assert violations(root, known={}) == []


def test_cycles_are_found_and_function_level_imports_do_not_make_one(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"storage/a.py": "from storage import b\n", "storage/b.py": "import storage.c\n",
                            "storage/c.py": "from storage.a import x\n",
                            "storage/d.py": "import storage.e\n", "storage/e.py": "def f():\n    import storage.d\n"})
    assert violations(root, known={}) == ["import cycle: storage.a <-> storage.b <-> storage.c"]


def test_a_known_violation_excuses_only_its_own_edge(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"registry/auth/setup.py": "from registry.server.config import ConfigError\n",
                            "registry/server/config.py": "from registry.auth.setup import AuthSetup\n",
                            "registry/server/other.py": "import hoist.cli\n", "hoist/cli.py": ""})
    known = {("registry.auth.setup", "registry.server.config"): "work in progress"}
    assert violations(root, known=known) == [
        "registry/server/other.py:1: registry.server.other imports hoist.cli: "
        "registry/server/ imports only registry/server/, registry/auth/ and storage/"]
    assert [p for p in violations(root, known={}) if "setup" in p] == [
        "registry/auth/setup.py:1: registry.auth.setup imports registry.server.config: "
        "registry/auth/ imports neither registry/server/, registry/client/ nor hoist/",
        "import cycle: registry.auth.setup <-> registry.server.config"]
