"""New deployment (seed figures 18-20): a form (description, source: uploaded archive or the
artifacts of an earlier task, build host/commands/artifacts, install and run commands,
autoRestart, debug, sandbox network, targets by id and tag or from the map) and the same
descriptor as YAML, editable. While the operator types, ``POST /tasks/preview`` validates it
and shows how many devices it matches (or the server's error naming the field)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import ui

from swarmdeploy.client import ApiError
from swarmdeploy.gui.compose import DeploymentForm, to_yaml
from swarmdeploy.gui.context import GuiContext
from swarmdeploy.gui.live import Debounced
from swarmdeploy.gui.pages.layout import (
    DEPLOYMENTS,
    NEW_DEPLOYMENT,
    open_page,
)
from swarmdeploy.gui.rows import printable
from swarmdeploy.gui.session import Session

#: Largest archive the form uploads (bigger ones: ``swarmdeploy tasks create --archive``).
MAX_ARCHIVE_BYTES = 64 << 20
SHOWN_MATCHES = 12


class ComposePage:
    """The form, the YAML and the live match panel of one new deployment."""

    def __init__(self, ctx: GuiContext, session: Session) -> None:
        self.ctx = ctx
        self.api_key = session.api_key
        self.form = DeploymentForm(target_ids=", ".join(session.draft_ids))
        self.archive: tuple[str, bytes] | None = None
        self.preview = Debounced(self.check, 0.4)
        session.draft_ids = []
        with ui.row().classes("w-full no-wrap gap-8"):
            with ui.column().classes("w-1/2"):
                self._fields()
            with ui.column().classes("w-1/2"):
                self.direct = ui.switch("Edit the YAML directly").props(
                    'data-testid="compose-direct"'
                )
                self.yaml = ui.codemirror(to_yaml(self.form.descriptor()), language="YAML")
                self.yaml.classes("w-full h-80").props('data-testid="compose-yaml"')
                self.matches = ui.label("").props('data-testid="compose-matches"')
                self.error = (
                    ui.label("").classes("text-negative").props('data-testid="compose-error"')
                )
                self.submit_button = ui.button("Deploy", on_click=self.submit).props(
                    'data-testid="compose-submit"'
                )
        if session.draft_yaml:
            self.yaml.value = session.draft_yaml
            self.direct.value = True
            session.draft_yaml = ""
        self.yaml.on_value_change(self.yaml_changed)
        self.direct.on_value_change(lambda _: self.changed())

    def _fields(self) -> None:
        bind = self._bind
        bind(ui.input("Description"), "description", "compose-description")
        with ui.row():
            bind(ui.checkbox("Debug (stream all output)"), "debug", "compose-debug")
            bind(ui.checkbox("Network in the sandbox"), "network", "compose-network")
        ui.label("Source").classes("font-bold")
        ui.upload(
            label=f"Archive (zip or tar.gz, up to {MAX_ARCHIVE_BYTES >> 20} MiB)",
            auto_upload=True,
            max_file_size=MAX_ARCHIVE_BYTES,
            on_upload=self.uploaded,
        ).props('accept=".zip,.tar.gz,.tgz" data-testid="compose-archive"').classes("w-full")
        self.archive_label = ui.label("no archive").props('data-testid="compose-archive-name"')
        bind(ui.input("…or reuse the artifacts of task"), "source_task", "compose-source-task")
        with ui.expansion("Build on a builder device first").classes("w-full"):
            bind(ui.input("Build host (target id)"), "build_host", "compose-build-host")
            bind(ui.textarea("Build commands (one per line)"), "build_commands", "compose-build")
            bind(ui.textarea("Artifacts (relative paths)"), "build_artifacts", "compose-artifacts")
        bind(ui.textarea("Install commands (one per line, in order)"), "install", "compose-install")
        bind(ui.textarea("Run commands (one per line, in parallel)"), "run", "compose-run")
        bind(ui.checkbox("Restart run commands that crash"), "auto_restart", "compose-restart")
        ui.label("Targets (a device matches by id or by any tag)").classes("font-bold")
        bind(ui.input("Ids"), "target_ids", "compose-ids")
        bind(ui.input("Tags"), "target_tags", "compose-tags")

    def _bind(self, element: Any, field: str, testid: str) -> None:
        element.value = getattr(self.form, field)
        element.props(f'data-testid="{testid}"')

        def store(event: Any) -> None:
            setattr(self.form, field, event.value)
            self.changed()

        element.on_value_change(store)

    def changed(self) -> None:
        """A form field changed: regenerate the YAML (unless edited directly), re-check."""
        if not self.direct.value:
            self.yaml.value = to_yaml(self.form.descriptor())
        ui.timer(0, self.preview.poke, once=True)

    def yaml_changed(self) -> None:
        if self.direct.value:
            ui.timer(0, self.preview.poke, once=True)

    def _body(self) -> tuple[bytes, str]:
        if self.direct.value:
            return (self.yaml.value or "").encode(), "application/yaml"
        return json.dumps(self.form.descriptor()).encode(), "application/json"

    async def uploaded(self, event: Any) -> None:
        self.archive = (event.file.name, await event.file.read())
        self.archive_label.text = f"{printable(event.file.name)} ({len(self.archive[1]):,} bytes)"
        self.changed()

    async def check(self) -> None:
        """Validate on the server; show the matched devices or the error with its field."""
        body, media = self._body()
        if self.archive is not None:
            body, media = self._with_placeholder_source(body, media)
        try:
            async with self.ctx.client(self.api_key) as api:
                answer = await api.request(
                    "POST", "/tasks/preview", content=body, headers={"Content-Type": media}
                )
        except ApiError as exc:
            self.error.text = printable(str(exc))
            self.matches.text = ""
            return
        self.error.text = ""
        shown = ", ".join(printable(t) for t in answer["targets"][:SHOWN_MATCHES])
        more = answer["total"] - SHOWN_MATCHES
        self.matches.text = f"{answer['total']} device(s) match: {shown}" + (
            f" … and {more} more" if more > 0 else ""
        )

    def _with_placeholder_source(self, body: bytes, media: str) -> tuple[bytes, str]:
        """The preview cannot carry the archive; an empty zip stands in for it so that a
        build (which needs a source) validates."""
        import yaml

        document = yaml.safe_load(body) if media == "application/yaml" else json.loads(body)
        if isinstance(document, dict) and "source" not in document:
            document["source"] = {"zip": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}
        return json.dumps(document).encode(), "application/json"

    async def submit(self) -> None:
        """Create the task (multipart with the archive, if one was uploaded)."""
        body, media = self._body()
        try:
            async with self.ctx.client(self.api_key) as api:
                if self.archive is None:
                    task = await api.request(
                        "POST", "/tasks", content=body, headers={"Content-Type": media}
                    )
                else:
                    name, data = self.archive
                    files: dict[str, tuple[str | None, bytes, str]] = {
                        "descriptor": ("descriptor", body, media),
                        "archive": (name, data, "application/octet-stream"),
                    }
                    task = await api.request("POST", "/tasks", files=files)
        except ApiError as exc:
            self.error.text = printable(str(exc))
            return
        ui.navigate.to(f"{DEPLOYMENTS}/{task['id']}")


def register(ctx: GuiContext) -> None:
    """Declare ``/ui/deployments/new``."""

    @ui.page(NEW_DEPLOYMENT)
    async def compose() -> RedirectResponse | None:
        session = open_page(ctx, "New deployment", "operator", "Deploying needs the operator role.")
        if not isinstance(session, Session):
            return session
        page = ComposePage(ctx, session)
        await page.check()
        return None
