"""``/artifacts`` against a real app on SQLite: list, look up, download; the build stage in
``GET /tasks/{id}``."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from swarmdeploy.storage.records import ArtifactRecord
from tests.manager.conftest import Api


def _zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.c", "int main(void) { return 0; }\n")
    return base64.b64encode(buf.getvalue()).decode()


def build_doc() -> dict[str, object]:
    return {
        "source": {"zip": _zip_b64()},
        "build": {"host": "builder", "commands": ["make hello"], "artifacts": ["hello"]},
        "deploy": {"run": {"commands": ["./hello"]}, "target": {"tags": ["armhf"]}},
    }


@pytest.fixture
async def built(api: Api) -> tuple[Api, str, str, bytes]:
    """A build task whose build delivered one artifact (recorded as the agent link does)."""
    assert (await api.register("builder")).status_code == 201
    assert (await api.register("pi-1", tags=["armhf"])).status_code == 201
    task_id = (await api.client.post("/tasks", json=build_doc())).json()["id"]
    blob = bytes(range(256)) * 5000  # 1.28 MB: two download chunks
    digest = await api.services.blobs.put(blob)
    record = ArtifactRecord(task_id, digest, "artifacts.tar.gz", len(blob), "builder", 4242,
                            ("make hello",))  # fmt: skip
    await api.storage.add_artifacts([record])
    await api.storage.note_build(task_id, host="builder", started_at=4000, finished_at=4242)
    await api.storage.set_task_target_state(task_id, "builder", state="built", updated_at=4242)
    return api, task_id, digest, blob


async def test_list_shows_artifacts_with_provenance_and_filters_by_task(
    built: tuple[Api, str, str, bytes],
) -> None:
    api, task_id, digest, blob = built
    viewer = await api.headers_for("viewer")
    r = await api.client.get("/artifacts", params={"task": task_id}, headers=viewer)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "total": 1, "page": 1, "perPage": 100,
        "items": [{
            "sha256": digest, "name": "artifacts.tar.gz", "size": len(blob), "task": task_id,
            "buildHost": "builder", "builtAt": 4242, "commands": ["make hello"],
        }],
    }  # fmt: skip
    other = await api.client.get("/artifacts", params={"task": "someone-else"}, headers=viewer)
    assert other.json()["total"] == 0
    assert (await api.client.get("/artifacts", headers={"Authorization": ""})).status_code == 401


async def test_lookup_by_digest_and_errors_name_the_problem(
    built: tuple[Api, str, str, bytes],
) -> None:
    api, task_id, digest, _ = built
    doc = (await api.client.get(f"/artifacts/{digest}")).json()
    assert doc["tasks"] == [task_id] and doc["buildHost"] == "builder"
    missing = await api.client.get(f"/artifacts/{'0' * 64}")
    assert missing.status_code == 404 and "no build produced" in missing.json()["error"]
    bad = await api.client.get("/artifacts/not-a-digest")
    assert bad.status_code == 422 and bad.json()["path"] == "path.sha256"


async def test_download_streams_gzip_with_length_and_file_name(
    built: tuple[Api, str, str, bytes],
) -> None:
    api, _, digest, blob = built
    viewer = await api.headers_for("viewer")
    r = await api.client.get(f"/artifacts/{digest}/download", headers=viewer)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["content-length"] == str(len(blob))
    assert r.headers["content-disposition"] == 'attachment; filename="artifacts.tar.gz"'
    assert r.content == blob
    assert (await api.client.get(f"/artifacts/{'1' * 64}/download")).status_code == 404


async def test_task_document_shows_the_build_stage_before_the_targets(
    built: tuple[Api, str, str, bytes],
) -> None:
    api, task_id, digest, blob = built
    doc = (await api.client.get(f"/tasks/{task_id}")).json()
    assert doc["build"] == {
        "host": "builder", "commands": ["make hello"], "artifactPaths": ["hello"],
        "state": "built", "reason": "", "startedAt": 4000, "finishedAt": 4242,
        "durationMs": 242,
        "artifacts": [{"name": "artifacts.tar.gz", "sha256": digest, "size": len(blob)}],
    }  # fmt: skip
    keys = list(doc)
    assert keys.index("build") < keys.index("targets")
    listed = (await api.client.get("/tasks")).json()["items"]
    assert listed[0]["build"]["durationMs"] == 242


async def test_redeploy_by_source_task_uses_the_build_without_building_again(
    built: tuple[Api, str, str, bytes],
) -> None:
    api, task_id, _, _ = built
    doc = {
        "source": {"task": task_id},
        "deploy": {"run": {"commands": ["./hello"]}, "target": {"tags": ["armhf"]}},
    }
    r = await api.client.post("/tasks", json=doc)
    assert r.status_code == 201, r.text
    assert r.json()["source"]["task"] == task_id and r.json()["build"] is None
    assert [t["role"] for t in r.json()["targets"]] == ["deploy"]
