"""``GET /logs``: filters, full text, time range, sorting, paging, plain-text dump."""

from __future__ import annotations

import pytest

from swarmdeploy.storage.records import LogRecord
from tests.manager.conftest import Api

LINES = [
    LogRecord(1000, "a", "t1", "install", "make", "compiling module one", seq=1),
    LogRecord(2000, "a", "t1", "install", "make", "error: missing header", error=True, seq=2),
    LogRecord(3000, "b", "t1", "run", "./app", "hello world", seq=1),
    LogRecord(4000, "b", "t2", "run", "./app", "hello again world", seq=2),
    LogRecord(5000, "a", "t2", "run", "./srv", "listening", seq=3),
]


@pytest.fixture
async def logged(api: Api) -> Api:
    assert await api.services.logs.ingest(LINES) == 5
    return api


async def _outputs(api: Api, **params: str | int) -> list[str]:
    r = await api.client.get("/logs", params=params)
    assert r.status_code == 200, r.text
    return [line["output"] for line in r.json()["items"]]


async def test_filters_are_anded(logged: Api) -> None:
    assert await _outputs(logged, target="a", task="t1") == [
        "compiling module one",
        "error: missing header",
    ]
    assert await _outputs(logged, stage="run", command="./app") == [
        "hello world",
        "hello again world",
    ]


async def test_output_is_full_text_all_words(logged: Api) -> None:
    assert await _outputs(logged, output="world hello") == ["hello world", "hello again world"]
    assert await _outputs(logged, output="again world") == ["hello again world"]


async def test_error_filter_true_and_false(logged: Api) -> None:
    assert await _outputs(logged, error="true") == ["error: missing header"]
    assert len(await _outputs(logged, error="false")) == 4


async def test_time_range_since_inclusive_until_exclusive(logged: Api) -> None:
    assert await _outputs(logged, since=2000, until=4000) == [
        "error: missing header",
        "hello world",
    ]


async def test_sort_and_page(logged: Api) -> None:
    r = await logged.client.get(
        "/logs", params={"sortBy": "time", "sortOrder": "desc", "perPage": 2, "page": 2}
    )
    doc = r.json()
    assert (doc["total"], doc["page"], doc["perPage"]) == (5, 2, 2)
    assert [line["time"] for line in doc["items"]] == [3000, 2000]


@pytest.mark.parametrize(
    "params",
    [{"sortBy": "output"}, {"since": -1}, {"error": "maybe"}, {"perPage": 0}],
)
async def test_bad_parameters_are_422(logged: Api, params: dict[str, str | int]) -> None:
    r = await logged.client.get("/logs", params=params)
    assert r.status_code == 422 and r.json()["path"].startswith("query.")


async def test_plain_text_dump(logged: Api) -> None:
    r = await logged.client.get("/logs", params={"target": "a"}, headers={"Accept": "text/plain"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert lines[0] == "page: 1, perPage: 100, total: 3"
    assert (
        lines[2] == "1970-01-01T00:00:02.000+00:00 a t1 install make ERROR | error: missing header"
    )


async def test_same_line_ingested_twice_is_stored_once(logged: Api) -> None:
    assert await logged.services.logs.ingest(LINES[:2]) == 0
    assert (await logged.client.get("/logs")).json()["total"] == 5


async def test_logs_need_viewer(logged: Api) -> None:
    r = await logged.client.get("/logs", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
