"""No import circles between modules: in every Rust crate of the workspace and in the Python
package.

A Rust module's graph edges are the paths it names (`use crate::a::b`, `super::x::Item`,
`crate::a::f(...)` in code), each resolved to the deepest module of the crate's `mod` tree it
reaches. A module naming one of its ancestors is not an edge: the parent is the namespace its
children are declared in. Test modules (`#[cfg(test)] mod tests`) are left out; they may use
anything. A Python module's edges are its imports of modules of the same package (``import
microsandbox_tui.x``, ``from .x import y``, ``from . import x``) that run: at any depth of the
file (a function-local import only hides a circle), except under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON_PACKAGE = "microsandbox_tui"

Graph = Mapping[str, set[str]]

# `mod name;` or `mod name {`, with attributes and visibility before it.
_MOD_DECLARATION = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*(;|\{)", re.MULTILINE)
# A path from the crate root or a parent: `crate::a::b`, `super::super::a`, `self::a`.
_RUST_PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
# A braced group after a path: `use crate::a::{b, c::d}` names `crate::a::b`, `crate::a::c::d`.
_USE_GROUP = re.compile(r"\b((?:crate|super|self)(?:::\w+)*)::\{([^{}]*)\}")
_TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{")


def _strip_comments_and_strings(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    source = re.sub(r"//[^\n]*", "", source)
    source = re.sub(r'r#*"(?:.|\n)*?"#*', '""', source)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', source)


def _without_test_modules(source: str) -> str:
    """The source without its `#[cfg(test)] mod x { ... }` blocks (braces are balanced once
    comments and strings are gone)."""
    while match := _TEST_MODULE.search(source):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(source)):
            depth += {"{": 1, "}": -1}.get(source[end], 0)
            if depth == 0:
                break
        source = source[: match.start()] + source[end + 1 :]
    return source


def _child_file(parent_file: Path, parent_is_dir_module: bool, name: str) -> Path | None:
    base = parent_file.parent if parent_is_dir_module else parent_file.with_suffix("")
    for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
        if candidate.is_file():
            return candidate
    return None


def rust_modules(crate_root: Path) -> dict[str, str]:
    """Module path (`crate::a::b`) -> its source without comments, strings and tests."""
    modules: dict[str, str] = {}

    def visit(path: str, file: Path, dir_module: bool) -> None:
        source = _without_test_modules(_strip_comments_and_strings(file.read_text()))
        modules[path] = source
        for name, _ in _MOD_DECLARATION.findall(source):
            child = _child_file(file, dir_module, name)
            if child is not None:
                visit(f"{path}::{name}", child, child.name == "mod.rs")

    visit("crate", crate_root, True)
    return modules


def _named_paths(source: str) -> Iterable[str]:
    for prefix, group in _USE_GROUP.findall(source):
        for item in group.split(","):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self" and item != "*":
                yield f"{prefix}::{item}"
            elif item in ("self", "*"):
                yield prefix
    yield from _RUST_PATH.findall(source)


def _absolute(module: str, path: str) -> str:
    parts = path.split("::")
    here = module.split("::")
    if parts[0] == "crate":
        return path
    while parts and parts[0] in ("super", "self"):
        if parts.pop(0) == "super":
            here = here[:-1]
    return "::".join([*here, *parts])


def rust_graph(crate_root: Path) -> dict[str, set[str]]:
    modules = rust_modules(crate_root)
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, source in modules.items():
        for named in _named_paths(source):
            parts = _absolute(module, named).split("::")
            target = next(
                (
                    "::".join(parts[:n])
                    for n in range(len(parts), 0, -1)
                    if "::".join(parts[:n]) in modules
                ),
                None,
            )
            if target and target != module and not module.startswith(target + "::"):
                graph[module].add(target)
    return graph


def python_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    def name(file: Path) -> str:
        parts = file.relative_to(package_dir).with_suffix("").parts
        return ".".join([package, *parts]).removesuffix(".__init__")

    files = {name(file): file for file in package_dir.rglob("*.py")}
    # Extension modules exist as their stubs; they import nothing of the package.
    extensions = {name(stub) for stub in package_dir.rglob("*.pyi")} - files.keys()
    graph: dict[str, set[str]] = {module: set() for module in [*files, *extensions]}
    for module, file in files.items():
        is_package = file.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(file.read_text(), str(file))):
            for target in _python_imports(node, module, is_package, graph):
                if target in graph and target != module:
                    graph[module].add(target)
    return graph


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:`, which never run (they
    only name types for annotations)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _python_imports(
    node: ast.AST, module: str, is_package: bool, modules: Mapping[str, Path]
) -> Iterable[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            source = ".".join([*base, *(node.module.split(".") if node.module else [])])
        else:
            source = node.module or ""
        for alias in node.names:
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one, else a
            # name `pkg/__init__.py` defines.
            submodule = f"{source}.{alias.name}"
            yield submodule if submodule in modules else source


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of `graph` as the modules along it (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def workspace_crates() -> dict[str, Path]:
    """Crate name -> the root file of its library (or of its binary when it has no library)."""
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]
    crates: dict[str, Path] = {}
    for member in workspace["members"]:
        for root in ("src/lib.rs", "src/main.rs"):
            if (REPO / member / root).is_file():
                crates[f"{member}:{root}"] = REPO / member / root
    return crates


def test_no_rust_crate_has_a_module_cycle() -> None:
    cycles = {
        crate: cycle
        for crate, root in workspace_crates().items()
        if (cycle := find_cycle(rust_graph(root)))
    }
    assert not cycles, "module cycles: " + "; ".join(
        f"{crate}: {' -> '.join(cycle)}" for crate, cycle in cycles.items()
    )


def test_the_python_package_has_no_import_cycle() -> None:
    cycle = find_cycle(python_graph(REPO / PYTHON_PACKAGE, PYTHON_PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_rust_references_resolve_through_the_mod_tree(tmp_path: Path) -> None:
    (tmp_path / "fs").mkdir()
    (tmp_path / "lib.rs").write_text("mod fs;\nmod tools;\npub struct Root;\n")
    (tmp_path / "tools.rs").write_text(
        "use crate::fs::ops::{self, run};\n// crate::fs::write::gone\n"
        '#[cfg(test)]\nmod tests { use crate::fs::write::Piece; fn f() { let _ = "}"; } }\n'
    )
    (tmp_path / "fs" / "mod.rs").write_text("mod ops;\nmod write;\nuse super::Root;\n")
    (tmp_path / "fs" / "ops.rs").write_text("use super::write::{Piece, Target as T};\n")
    (tmp_path / "fs" / "write.rs").write_text("fn f() { super::ops::run(); }\n")
    graph = rust_graph(tmp_path / "lib.rs")
    assert graph == {
        "crate": set(),
        "crate::fs": set(),
        "crate::fs::ops": {"crate::fs::write"},
        "crate::fs::write": {"crate::fs::ops"},
        "crate::tools": {"crate::fs::ops"},
    }
    assert find_cycle(graph) == ["crate::fs::ops", "crate::fs::write", "crate::fs::ops"]


def test_python_imports_resolve_to_the_package_modules(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import thing\n")
    (package / "_ext.pyi").write_text("from . import a\n")
    (package / "a.py").write_text("from . import b, _ext\nimport json\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import sub\n"
        "def f():\n    from pkg.sub import c\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from .. import a\nfrom ..a import thing\n")
    graph = python_graph(package, "pkg")
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.b", "pkg._ext"}
    assert graph["pkg._ext"] == set()
    assert graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
