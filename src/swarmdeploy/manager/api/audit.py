"""``GET /audit`` (admin): the hash-chained audit log, oldest first (issue 9, item 10).

Pages are stable (entries are only appended), so a client can walk them and recompute the
chain with ``protocol.audit.ChainChecker`` -- ``swarmdeploy audit verify`` does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from swarmdeploy.manager.api.deps import Admin, PageQuery, PerPageQuery, ServicesDep
from swarmdeploy.manager.api.errors import responses
from swarmdeploy.manager.api.models import AuditEntryPublic, ListOf
from swarmdeploy.manager.services.audit import audit_json

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=ListOf[AuditEntryPublic], responses=responses(401, 403))
async def list_audit(
    services: ServicesDep, _: Admin, page: PageQuery = 1, per_page: PerPageQuery = 100
) -> dict[str, Any]:
    """Audit entries in ``seq`` order (oldest first)."""
    result = await services.audit.page(page=page, per_page=per_page)
    items = [audit_json(e) for e in result.items]
    return {"total": result.total, "items": items, "page": page, "perPage": per_page}
