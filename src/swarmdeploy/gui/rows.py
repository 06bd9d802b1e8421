"""API documents -> table rows for the GUI: pure functions, no NiceGUI, unit-tested.

Every string that came from the API is passed through :func:`printable`: control characters
(which a device or a registrant chooses) are shown escaped, never interpreted. HTML is never
built from API strings; Vue renders them as text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from swarmdeploy.protocol.text import escape_unsafe


def printable(value: object) -> str:
    """``value`` as text with C0/C1 controls, DEL, bidi and other format characters shown as
    ``\\xNN`` / ``\\uNNNN`` escapes (``protocol.text``, as the CLI escapes them)."""
    return escape_unsafe(str(value))


def trust_label(target: dict[str, Any]) -> str:
    """``verified`` / ``FOREIGN CA`` / ``INSECURE LAB`` / ``NO ANCHOR`` / ``unknown``."""
    security = target.get("security") or {}
    mode = security.get("mode", "unknown")
    if target.get("insecureLab") or mode == "insecure_lab":
        return "INSECURE LAB"
    if mode == "no_anchor":
        return "NO ANCHOR"
    if mode == "verified":
        return "FOREIGN CA" if security.get("trustsThisManager") is False else "verified"
    return "unknown"


def ago(ms: int | None, now_ms: int) -> str:
    """``ms`` (epoch milliseconds) as "12 s ago", "5 min ago", "3 h ago", a date, or "never"."""
    if ms is None:
        return "never"
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    if seconds < 36 * 3600:
        return f"{seconds // 3600} h ago"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


_GOOD = {"exited", "running", "healthy", "installed", "built"}
_BAD = {"declined", "install_failed", "failed", "expired", "build_failed", "rolled_back"}


def outcome(state: str | None) -> str:
    """How a task state reads at a glance: ``ok`` (green), ``failed`` (red), ``stopped``,
    ``active`` (still on its way) or ``none`` (no task: grey)."""
    if state is None:
        return "none"
    if state in _GOOD:
        return "ok"
    if state in _BAD:
        return "failed"
    return "stopped" if state == "stopped" else "active"


def target_row(target: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """One row of the devices table; ``history`` holds the outcomes of its newest tasks
    (newest first) for the coloured dots, ``latest`` the newest state in words."""
    location = target.get("location")
    recent = target.get("recentTasks") or []
    return {
        "key": target["id"],
        "id": printable(target["id"]),
        "name": printable(target.get("name") or ""),
        "tags": ", ".join(printable(tag) for tag in target.get("tags", [])),
        "online": "online" if target.get("online") else "offline",
        "lastSeen": ago(target.get("lastSeenAt"), now_ms),
        "trust": trust_label(target),
        "location": f"{location['lat']:.5f}, {location['lon']:.5f}" if location else "",
        "latest": printable(recent[0]["state"]) if recent else "",
        "history": [
            {"outcome": outcome(r["state"]), "title": printable(f"{r['task']}: {r['state']}")}
            for r in recent
        ],
    }


def agent_command(manager_url: str, token: str) -> str:
    """The command line that enrols a device with ``token`` (``ca.pem``: ``GET /ca``)."""
    return (
        "swarmdeploy agent --data-dir /var/lib/swarmdeploy "
        f"--manager {manager_url} --token {token} --trust-anchor ca.pem"
    )


def release_text(ref: dict[str, Any] | None) -> str:
    """A release reference as ``task (version)``, escaped; ``—`` for none."""
    if not ref:
        return "—"
    version = ref.get("version")
    task = printable(ref["taskId"])
    return f"{task} ({printable(version)})" if version else task


def app_row(app: dict[str, Any]) -> dict[str, Any]:
    """One row of the apps list (``GET /apps`` item)."""
    return {
        "key": app["name"],
        "name": printable(app["name"]),
        "latest": release_text(app["latest"]),
        "standing": "yes" if app["latest"]["standing"] else "no",
        "releases": app["releases"],
        "devices": app["devices"],
        "running": app["running"],
        "behind": app["behind"],
    }


def _standing(release: dict[str, Any]) -> str:
    if not release["standing"]:
        return "no"
    return "yes, removed where it stops matching" if release["remove"] else "yes"


def release_row(release: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """One row of an app's releases (``GET /apps/{name}`` ``releases`` item)."""
    counts = sorted(release.get("stateCounts", {}).items())
    return {
        "key": release["taskId"],
        "release": release_text(release),
        "created": ago(release["createdAt"], now_ms),
        "standing": _standing(release),
        "selector": printable(release["selector"]),
        "status": "stopped" if release["stopped"] else "active",
        "states": ", ".join(f"{n} {printable(state)}" for state, n in counts),
    }


def device_app_row(item: dict[str, Any], key: str) -> dict[str, Any]:
    """One device and one app (``DeviceApp`` document) as a row keyed by ``item[key]``:
    desired, running, behind and why; ``canStop`` while the app runs or is on its way."""
    state = item.get("state")
    why = ""
    if item["behind"]:
        why = printable(f"{state or 'not announced yet'}: {item.get('reason') or '—'}")
    return {
        "key": item[key],
        "target": printable(item["targetId"]),
        "app": printable(item["app"]),
        "desired": release_text(item.get("desired")),
        "running": release_text(item.get("running")),
        "behind": "behind" if item["behind"] else "",
        "why": why,
        "canStop": item.get("running") is not None or outcome(state) == "active",
    }


def device_app_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The apps of one device (``GET /targets/{id}/apps`` items), keyed by app."""
    return [device_app_row(item, "app") for item in items]
