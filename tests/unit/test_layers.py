"""A request goes one way: api -> commands or queries -> db. The layers below api never import
it, nor anything that knows HTTP, and never name a status code or a header; db/ imports none of
the layers above it, and the two sides do not import each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW_API = sorted(
    path for package in ("commands", "queries") for path in (ROOT / package).rglob("*.py")
)
HTTP_MODULES = ("api", "fastapi", "starlette", "httpx", "httpx2", "uvicorn", "http")
HTTP_WORDS = ("status_code", "headers", "etag", "location", "idempotent-replayed")


def imported_modules(tree: ast.AST) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", BELOW_API, ids=lambda path: str(path.relative_to(ROOT)))
def test_commands_and_queries_know_nothing_of_http(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)

    http = [m for m in imported_modules(tree) if m.split(".")[0] in HTTP_MODULES]
    names = {node.id.lower() for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        node.attr.lower() for node in ast.walk(tree) if isinstance(node, ast.Attribute)
    }
    strings = {
        node.value.lower()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }

    assert http == []
    assert not names & set(HTTP_WORDS)
    assert not strings & set(HTTP_WORDS)


def test_the_layer_rule_sees_every_module_below_the_api() -> None:
    assert {path.parent.name for path in BELOW_API} == {"commands", "queries"}
    assert len(BELOW_API) >= 6


def imports_of(package: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): {
            m.split(".")[0] for m in imported_modules(ast.parse(path.read_text()))
        }
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_db_imports_none_of_the_layers_above_it() -> None:
    offenders = {
        path: found & {"api", "commands", "queries"} for path, found in imports_of("db").items()
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_commands_and_queries_do_not_import_each_other() -> None:
    commands = {path: found & {"queries"} for path, found in imports_of("commands").items()}
    queries = {path: found & {"commands"} for path, found in imports_of("queries").items()}
    assert {path: found for path, found in (commands | queries).items() if found} == {}
