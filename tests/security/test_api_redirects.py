"""No redirect is built from the request's ``Host`` header (issue 9, item 13)."""

from __future__ import annotations

from tests.manager.conftest import Api


async def test_trailing_slash_answers_without_a_redirect_to_the_host_header(api: Api) -> None:
    for path in ("/tasks/", "/targets/", "/logs/", "/orders/"):
        resp = await api.client.get(path, headers={"Host": "evil.example", "Authorization": ""})
        assert resp.status_code == 404, (path, resp.status_code, resp.headers)
        assert "location" not in resp.headers
        assert "evil.example" not in resp.text


async def test_paths_without_the_slash_still_need_credentials(api: Api) -> None:
    resp = await api.client.get("/tasks", headers={"Host": "evil.example", "Authorization": ""})
    assert resp.status_code == 401
