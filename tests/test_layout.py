"""The package layout holds: no import cycle, `cloudflare/` is plain Python, views leave Cloudflare to services,
the emulator loads only when it is used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.test_production import run_portal

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("portal", "certificates", "cloudflare", "cloudflare_emulator")


def modules_of(packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of `packages` by dotted name (migrations left out: Django imports them, nothing else does)."""
    modules = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def imported_names(path: Path) -> set[str]:
    """Every absolute import anywhere in the file, inside functions too: a function-level import hides a
    dependency, it does not remove it. `from a import b` counts as `a` and as `a.b` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    modules = modules_of(packages)
    return {name: (imported_names(path) & modules.keys()) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while (member := stack.pop()) != module:
                component.append(member)
            if component:
                found.append(sorted([module, *component]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_among_the_products_packages():
    assert cycles(import_graph(PRODUCT_PACKAGES)) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert cycles(graph) == [["a", "b", "c"]]
    assert "certificates.tasks" in imported_names(ROOT / "certificates" / "apps.py"), "imports inside functions count"


def test_views_and_the_api_leave_cloudflare_to_the_services():
    """A page or an API call never talks to Cloudflare itself: it calls a service, which does."""
    for module in ("certificates/views.py", "certificates/api.py"):
        imported = imported_names(ROOT / module)
        assert not {name for name in imported if name.startswith("cloudflare")}, module
        assert "certificates.cloudflare_client.get_cloudflare_client" not in imported, module
        assert not {name for name in imported if name.startswith("certificates.firewall.sync.firewall_plan")}, module


def test_cloudflare_imports_neither_django_nor_the_emulator():
    offenders = {
        f"{name}: {imported}"
        for name, path in modules_of(("cloudflare",)).items()
        for imported in imported_names(path)
        if imported.split(".")[0] in ("django", "cloudflare_emulator", "portal", "certificates")
    }
    assert offenders == set()


def test_importing_every_cloudflare_module_loads_no_django_and_no_emulator():
    modules = sorted(modules_of(("cloudflare",)))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'cloudflare_emulator'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Start-up as gunicorn and the worker would: settings, every URL (views, API), the WSGI app and the tasks.
START_UP_AND_LIST_EMULATOR_MODULES = """
import sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns
import portal.wsgi, certificates.tasks
print(sorted(m for m in sys.modules if m.split(".")[0] == "cloudflare_emulator"))
"""


def test_production_start_up_with_a_token_imports_no_emulator_module(tmp_path):
    result = run_portal(tmp_path, ["-c", START_UP_AND_LIST_EMULATOR_MODULES])

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_emulator_is_imported_when_it_is_asked_for(tmp_path):
    """The check above can see emulator modules: with the emulator in use, building a client loads it."""
    code = START_UP_AND_LIST_EMULATOR_MODULES.replace(
        "import portal.wsgi",
        "from certificates.cloudflare_client import get_cloudflare_client; get_cloudflare_client()\nimport portal.wsgi",
    )
    result = run_portal(
        tmp_path,
        ["-c", code],
        CLOUDFLARE_API_TOKEN=None,
        CLOUDFLARE_EMULATOR="true",
        EMAIL_HOST=None,
        EMAIL_CONSOLE="true",
    )

    assert result.returncode == 0, result.stderr
    assert "cloudflare_emulator" in result.stdout.strip().splitlines()[-1]
