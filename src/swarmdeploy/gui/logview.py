"""Log lines as a table, errors highlighted; shared by the device page and the logs page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from nicegui import ui

from swarmdeploy.gui.rows import printable

COLUMNS: list[dict[str, Any]] = [
    {"name": "time", "label": "Time (UTC)", "field": "time", "align": "left"},
    {"name": "target", "label": "Device", "field": "target", "align": "left"},
    {"name": "task", "label": "Task", "field": "task", "align": "left"},
    {"name": "stage", "label": "Stage", "field": "stage", "align": "left"},
    {"name": "command", "label": "Command", "field": "command", "align": "left"},
    {"name": "output", "label": "Output", "field": "output", "align": "left",
     "style": "white-space: pre-wrap; font-family: monospace"},
]  # fmt: skip
ROW_CLASS = ":props=\"props\" :class=\"props.row.error ? 'bg-red-50 text-red-900' : ''\""


def log_row(line: dict[str, Any], index: int) -> dict[str, Any]:
    """One table row of a ``GET /logs`` item (``error`` kept for the highlight)."""
    when = dt.datetime.fromtimestamp(line["time"] / 1000, dt.UTC)
    return {
        "key": index,
        "time": when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "target": printable(line["target"]),
        "task": printable(line["task"]),
        "stage": printable(line["stage"]),
        "command": printable(line["command"]),
        "output": printable(line["output"]),
        "error": bool(line["error"]),
    }


def log_table(testid: str) -> Any:
    """An empty log table whose error lines are highlighted."""
    table = ui.table(columns=COLUMNS, rows=[], row_key="key").classes("w-full")
    table.props(f'dense virtual-scroll :rows-per-page-options="[0]" data-testid="{testid}"')
    table.add_slot(
        "body",
        f"""<q-tr {ROW_CLASS} :data-error="props.row.error">
              <q-td v-for="col in props.cols" :key="col.name" :props="props"
                    :style="col.style">{{{{ col.value }}}}</q-td>
            </q-tr>""",
    )
    return table


def show(table: Any, lines: list[dict[str, Any]]) -> None:
    """Replace the table's rows with ``lines`` (API items)."""
    table.rows = [log_row(line, i) for i, line in enumerate(lines)]
    table.update()
