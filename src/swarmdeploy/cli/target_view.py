"""The readable form of a target document for ``targets show``: one labelled row per fact
an operator asks about (system, agent, trust, transport, health), never raw report keys.

Fields a manager or agent does not report yet (``os``, ``arch``, ``agentVersion``,
``transport`` come with newer agents) are shown as ``-``.
"""

from __future__ import annotations

from typing import Any

from swarmdeploy.cli.render import cell, fmt_time, trust_label

GIB = 1 << 30


def _gib(value: object) -> str:
    return f"{value / GIB:.1f} GiB" if isinstance(value, int | float) else "?"


def health_text(health: object) -> str:
    """The latest health report in one line (``-`` before the first report)."""
    if not isinstance(health, dict) or not health:
        return "-"
    parts = []
    if isinstance(health.get("cpu_percent"), int | float):
        parts.append(f"CPU {health['cpu_percent']:.0f}%")
    if isinstance(health.get("load_1m"), int | float):
        parts.append(f"load {health['load_1m']:.2f}")
    if health.get("mem_total_bytes"):
        parts.append(
            f"memory {_gib(health.get('mem_available_bytes'))} free of "
            f"{_gib(health['mem_total_bytes'])}"
        )
    if health.get("disk_total_bytes"):
        parts.append(
            f"disk {_gib(health.get('disk_free_bytes'))} free of {_gib(health['disk_total_bytes'])}"
        )
    if health.get("disk_low"):
        parts.append("DISK LOW")
    if health.get("manager_reachable") is False:
        parts.append("manager unreachable")
    return ", ".join(parts) or "-"


def _location(doc: dict[str, Any]) -> str:
    loc = doc.get("location")
    if isinstance(loc, dict) and "lat" in loc and "lon" in loc:
        return f"{loc['lat']}, {loc['lon']}"
    return "-"


def _trust(doc: dict[str, Any]) -> str:
    label = trust_label(doc)
    security = doc.get("security")
    if isinstance(security, dict) and security.get("revocationList"):
        label += f" (revocation list #{security['revocationList']})"
    return label


def _terminal(doc: dict[str, Any]) -> str:
    security = doc.get("security")
    value = security.get("terminal") if isinstance(security, dict) else None
    return "-" if value in (None, "", "unknown") else str(value)


def _sandbox(doc: dict[str, Any]) -> str:
    confinement = doc.get("confinement")
    value = confinement.get("sandbox") if isinstance(confinement, dict) else None
    return "-" if value in (None, "", "unknown") else str(value)


def _reported(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return "-" if value in (None, "") else cell(value)


def target_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` rows of ``targets show`` for the target document ``doc``; every
    text is escaped (:func:`swarmdeploy.cli.render.cell`)."""
    online = doc.get("online")
    return [
        ("id", cell(doc.get("id"))),
        ("name", _reported(doc, "name")),
        ("tags", cell(doc.get("tags") or [])),
        ("location", _location(doc)),
        ("online", "yes" if online else "no"),
        ("last seen", fmt_time(doc.get("lastSeenAt"))),
        ("OS", _reported(doc, "os")),
        ("architecture", _reported(doc, "arch")),
        ("agent version", _reported(doc, "agentVersion")),
        ("transport", _reported(doc, "transport")),
        ("trust", _trust(doc)),
        ("terminal", _terminal(doc)),
        ("sandbox", _sandbox(doc)),
        ("health", health_text(doc.get("health"))),
        ("registered", fmt_time(doc.get("createdAt"))),
        ("token set", _reported(doc, "tokenSet")),
    ]


def release_text(ref: object) -> str:
    """A release reference ``{taskId, version}`` as ``task (version)``; ``-`` for none."""
    if not isinstance(ref, dict) or not ref.get("taskId"):
        return "-"
    version = ref.get("version")
    return f"{ref['taskId']} ({version})" if version else str(ref["taskId"])


def app_rows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The device's apps (``GET /targets/{id}/apps`` items) as a list envelope for
    ``targets show``: app, desired and running release, behind and why."""
    rows = [
        {
            "app": item.get("app"),
            "desired": release_text(item.get("desired")),
            "running": release_text(item.get("running")),
            "behind": "yes" if item.get("behind") else "",
            "why": (
                f"{item.get('state') or 'not announced'}: {item.get('reason') or '-'}"
                if item.get("behind")
                else ""
            ),
        }
        for item in items
    ]
    return {"total": len(rows), "items": rows, "page": 1, "perPage": len(rows)}
