"""Fixtures for manager tests: a real app (``create_app``) on real SQLite in a tmp dir,
driven in-process with httpx, plus helpers that register devices the way agents do."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from swarmdeploy.crypto import curve
from swarmdeploy.crypto.tokens import hash_token
from swarmdeploy.manager.app import create_app
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.settings import Role, Settings, load_settings
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TargetRecord

ADMIN_KEY = "test-admin-key-0123456789"


def bearer(key: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {key}"}


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test manager: SQLite in ``tmp_path``, generous registration limits."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database": f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}",
        "admin_key": ADMIN_KEY,
        "registration_rate_per_min": 10_000,
        "registration_burst": 1000,
        "registration_global_rate_per_min": 100_000,
    }
    values.update(overrides)
    return load_settings(**values)


@dataclasses.dataclass
class Api:
    """A running app with an admin client."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    @property
    def storage(self) -> Storage:
        return self.services.storage

    async def headers_for(self, role: Role, name: str | None = None) -> dict[str, str]:
        """Authorization headers of a fresh API key with ``role``."""
        _, plaintext = await self.services.api_keys.create(name or f"{role}-key", role)
        return bearer(plaintext)

    async def tokens(self, total: int = 1, name: str = "set") -> list[str]:
        """Fresh registration tokens."""
        _, tokens = await self.services.tokens.create(name, total)
        return tokens

    async def register(
        self, target_id: str, *, tags: list[str] | None = None, token: str | None = None
    ) -> httpx.Response:
        """Register a device through ``POST /rpc/targets`` like an agent does."""
        token = token or (await self.tokens(1, name=f"set-{target_id}"))[0]
        body = device_body(target_id, tags=tags or [])
        return await self.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})

    async def add_targets(self, ids: list[str], *, tags: tuple[str, ...] = ()) -> None:
        """Register many targets quickly, straight through storage (one token each)."""
        tokens = await self.tokens(len(ids), name=f"bulk-{ids[0]}")
        secret = self.services.keys.secret
        for target_id, token in zip(ids, tokens, strict=True):
            record = TargetRecord(
                id=target_id,
                curve_key=curve.generate_keypair().public,
                identity_key=identity_key_b64(),
                created_at=1,
                updated_at=1,
                tags=tags,
            )
            await self.storage.register_target(hash_token(secret, token), record, now=1)


def identity_key_b64() -> str:
    """A fresh Ed25519 public key, base64."""
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def device_body(target_id: str, *, tags: list[str] | None = None) -> dict[str, Any]:
    """A valid registration body with fresh keys."""
    return {
        "id": target_id,
        "tags": tags or [],
        "publicKey": curve.generate_keypair().public,
        "identityKey": identity_key_b64(),
    }


@contextlib.asynccontextmanager
async def running_api(settings: Settings, **kwargs: Any) -> AsyncIterator[Api]:
    """``create_app(settings, **kwargs)`` with its lifespan running and an admin client."""
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://manager", headers=bearer(ADMIN_KEY)
        ) as client:
            yield Api(app, client, settings)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """A manager on real SQLite in ``tmp_path`` with an admin client."""
    async with running_api(make_settings(tmp_path)) as running:
        yield running
