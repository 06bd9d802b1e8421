"""``docs/api.md`` names every route of the real app's OpenAPI document (issue 13: the docs
must not drift from the API)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.manager.conftest import Api

API_MD = Path(__file__).resolve().parents[3] / "docs" / "api.md"
#: `GET /tasks/{id}`, `GET/PUT /x`, `POST /tasks?name=N` -> (methods, path)
_ROUTE = re.compile(
    r"`((?:GET|POST|PUT|DELETE|PATCH)(?:/(?:GET|POST|PUT|DELETE|PATCH))*) (/[^`\s?]*)"
)
_PARAM = re.compile(r"\{[^}]*\}")


def documented_routes(text: str) -> set[tuple[str, str]]:
    """(method, path with ``{}`` for every parameter) of each route the text names."""
    found = set()
    for methods, path in _ROUTE.findall(text):
        for method in methods.split("/"):
            found.add((method.lower(), _PARAM.sub("{}", path.rstrip("/") or "/")))
    return found


def test_documented_routes_reads_the_forms_the_docs_use() -> None:
    text = "`GET/PUT /targets/{id}` and `POST /token_sets?name=N` and `DELETE /x/{key_id}`"
    assert documented_routes(text) == {
        ("get", "/targets/{}"), ("put", "/targets/{}"), ("post", "/token_sets"),
        ("delete", "/x/{}"),
    }  # fmt: skip


async def test_every_openapi_route_is_in_docs_api_md(api: Api) -> None:
    doc = (await api.client.get("/openapi.json", headers={"Authorization": ""})).json()
    routes = {(m, _PARAM.sub("{}", p)) for p, ops in doc["paths"].items() for m in ops}
    documented = documented_routes(API_MD.read_text())
    missing = sorted(f"{m.upper()} {p}" for m, p in routes - documented)
    assert not missing, f"docs/api.md does not name: {', '.join(missing)}"
    assert "DESIGN.md" not in API_MD.read_text()  # not part of this repository
