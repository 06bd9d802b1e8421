"""Wiring of the blob collector into the app: the start-up sweep runs before serving, and
deleting a task through the API frees its archive once the grace period is over."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

from swarmdeploy.manager.clock import wall_ms
from swarmdeploy.manager.services.blob_gc import GRACE_MS
from tests.manager.conftest import make_settings, running_api
from tests.manager.scrape import sample
from tests.manager.services.conftest import FakeClock


def _archive() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("run.sh", "echo hi\n")
    return base64.b64encode(buf.getvalue()).decode()


async def test_start_removes_spooled_archives_and_blob_temporaries(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    spooled = settings.data_dir / "incoming" / "upload-0123456789abcdef.part"
    temporary = settings.data_dir / "blobs" / "ab" / ".tmp-crashed"
    for path in (spooled, temporary):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a crash")
    async with running_api(settings):
        assert not spooled.exists() and not temporary.exists()


async def test_deleted_task_archive_is_freed_and_counted(tmp_path: Path) -> None:
    clock = FakeClock(wall_ms())
    async with running_api(make_settings(tmp_path), clock=clock) as api:
        await api.add_targets(["dev-1"])
        doc = {
            "source": {"zip": _archive()},
            "deploy": {"install": {"commands": ["true"]}, "target": {"ids": ["dev-1"]}},
        }
        created = (await api.client.post("/tasks", json=doc)).json()
        digest = created["source"]["sha256"]
        blob = api.settings.data_dir / "blobs" / digest[:2] / digest
        assert blob.exists()
        clock.now += GRACE_MS + 60_000
        assert (await api.client.delete(f"/tasks/{created['id']}")).status_code == 204
        assert not blob.exists()
        metrics = (await api.client.get("/metrics")).text
        assert sample(metrics, "swarmdeploy_blobs_collected_total") == 1
