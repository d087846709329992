"""The layout's rules: the method sits under the service, the LM layer at the bottom, and the
dashboard never loads the runner or torch.

The static rules read imports with `ast`; the last one starts the dashboard's pages in a fresh
interpreter and looks at what it loaded, which no reading of the source can promise.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWN_PACKAGES = ("bt_core", "db", "ui", "app_pages")
DASHBOARD = [ROOT / "app.py", *sorted((ROOT / "app_pages").rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]
# db.session's path helpers name folders; its engines and sessions are the service's alone
PATH_HELPERS = {"data_dir", "artifacts_root"}
DATABASE = ("sqlalchemy", "db.models", "db.queries")
# the service's modules that reach the model; torch and transformers are what they load
DASHBOARD_BANNED = ("bt_core.serve.runner", "bt_core.serve.worker", "bt_core.serve.ray_executor",
                    "torch", "transformers")


def imports(path: Path, *, top_level: bool = False) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names imported from it) of each import in `path`; with top_level, only
    those that run on import (not inside a function, not under `if TYPE_CHECKING`)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    nodes: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            names = [alias.name for alias in node.names]
            yield node.lineno, module, names
            # `from bt_core import adapter` imports the module bt_core.adapter
            yield from ((node.lineno, f"{module}.{name}", []) for name in names if _module_file(f"{module}.{name}"))
        elif top_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif top_level and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes.extend(node.orelse)
        else:
            nodes.extend(ast.iter_child_nodes(node))


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _module_file(module: str) -> Path | None:
    if not within(module, OWN_PACKAGES):
        return None
    base = ROOT.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def loaded_on_import(path: Path) -> dict[str, list[str]]:
    """Every module that importing `path` loads (its own packages' parents included), each with
    the chain of modules that led to it."""
    chains: dict[str, list[str]] = {}
    todo = [(path, [str(path.relative_to(ROOT))])]
    while todo:
        source, chain = todo.pop()
        for _, module, _ in imports(source, top_level=True):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):
                name = ".".join(parts[:depth])
                if name in chains:
                    continue
                chains[name] = [*chain, name]
                if (file := _module_file(name)) is not None:
                    todo.append((file, chains[name]))
    return chains


def test_only_the_service_touches_the_database():
    """The method (bt_core outside serve/) runs on scripted LMs in a notebook: no engine, no rows."""
    offences = []
    for path in sorted((ROOT / "bt_core").rglob("*.py")):
        if (ROOT / "bt_core" / "serve") in path.parents:
            continue
        for line, module, names in imports(path):
            sessions = module == "db.session" and (not names or set(names) - PATH_HELPERS)
            if within(module, DATABASE) or sessions or module == "db" and {"models", "queries", "session"} & set(names):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "\n".join(offences)


def test_the_dashboard_never_loads_the_runner_or_torch():
    """A page that loads torch costs every browser session seconds and a gigabyte; the runner would bring it."""
    offences = []
    for path in DASHBOARD:
        for module, chain in loaded_on_import(path).items():
            if within(module, DASHBOARD_BANNED):
                offences.append(" -> ".join(chain))
    assert not offences, "\n".join(sorted(offences))


def test_the_lm_layer_imports_nothing_above_it():
    """Backends are the bottom layer: the adapter and the optimizers build on them, never the reverse."""
    lm = ROOT / "bt_core" / "lm"
    offences = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                for path in sorted(lm.rglob("*.py")) for line, module, _ in imports(path)
                if within(module, ("bt_core",)) and not within(module, ("bt_core.lm",))]
    assert not offences, "\n".join(offences)


# Each page in turn, the Launch page last, then what the interpreter had loaded after each. A first
# run renders the navigation's first page, so each page is put first in PAGES (which app.py reads).
PAGES_THEN_MODULES = """
import json, sys
from streamlit.testing.v1 import AppTest
from ui.common import PAGES

report = {}
for key in sorted(PAGES, key=lambda key: key == "launch"):
    PAGES.update({key: PAGES.pop(key), **{other: PAGES.pop(other) for other in list(PAGES) if other != key}})
    app = AppTest.from_file("app.py", default_timeout=120).run()
    report[PAGES[key][0]] = {"failures": [str(e.value) for e in app.exception], "title": [t.value for t in app.title],
                             "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules)}
print(json.dumps(report))
"""
LAUNCH = "app_pages/launch_experiment.py"


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from a function's first statement after its docstring to its last."""
    body = function.body
    if ast.get_docstring(function) is not None:
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_functions_stay_short():
    """The median function a reader meets is a few lines, and none outgrows a screen."""
    files = [ROOT / "app.py", *(f for package in OWN_PACKAGES for f in sorted((ROOT / package).rglob("*.py"))
                                if "versions" not in f.parts)]
    lengths = {f"{path.relative_to(ROOT)}:{node.name}": body_lines(node) for path in files
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    ordered = sorted(lengths.values())
    assert ordered[len(ordered) // 2] <= 6
    assert {name: n for name, n in lengths.items() if n > 50} == {}


@pytest.fixture(scope="module")
def pages_loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[str]]]:
    """For real: every page rendered in a fresh interpreter, and what it had loaded after each."""
    home = tmp_path_factory.mktemp("pages")
    env = {**os.environ, "BT_HOME": str(home), "BT_AUTOSTART_WORKER": "0",
           "BT_DATABASE_URL": f"sqlite:///{home / 'empty.sqlite'}"}
    done = subprocess.run([sys.executable, "-c", PAGES_THEN_MODULES], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not [f for page in report.values() for f in page["failures"]], report
    assert all(page["title"] for page in report.values()), report  # each rendered its own page
    return report


@pytest.mark.ui
def test_the_pages_render_without_loading_torch(pages_loaded):
    loaded = {page: seen["loaded"] for page, seen in pages_loaded.items() if page != LAUNCH and seen["loaded"]}
    assert not loaded, f"pages loaded {loaded}"


@pytest.mark.ui
def test_the_launch_page_renders_without_loading_torch(pages_loaded):
    assert not pages_loaded[LAUNCH]["loaded"], f"the Launch page loaded {pages_loaded[LAUNCH]['loaded']}"
