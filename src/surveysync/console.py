"""Terminal output for the CLI: rich tables and progress on a terminal, plain text when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from surveysync.sync import ProgressHook


class Output:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.interactive = self.console.is_terminal

    def line(self, text: str = "") -> None:
        if self.interactive:
            self.console.print(text, markup=False)
        else:
            sys.stdout.write(text + "\n")

    def table(
        self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        if not self.interactive:
            if title:
                self.line(title)
            self.line("\t".join(columns))
            for row in rows:
                self.line("\t".join("" if cell is None else str(cell) for cell in row))
            return
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for index, column in enumerate(columns):
            # Short values stay on one line; only the last (free-text) column wraps.
            table.add_column(column, overflow="fold", no_wrap=index < len(columns) - 1)
        for row in rows:
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        self.console.print(table)

    @contextmanager
    def progress(self, label: str) -> Iterator[ProgressHook]:
        """A progress hook for run_sync: a bar on a terminal, silence when piped."""
        if not self.interactive:
            yield lambda event, amount: None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sales]} sales"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(label, total=None, sales=0)

            def hook(event: str, amount: int) -> None:
                if event == "days":
                    bar.update(task, total=amount)
                elif event == "day":
                    bar.advance(task, amount)
                elif event == "sales":
                    bar.update(task, sales=bar.tasks[0].fields["sales"] + amount)

            yield hook


def local_time(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def day_list(days: Sequence[date], limit: int = 10) -> str:
    if not days:
        return "none"
    shown = ", ".join(d.isoformat() for d in days[:limit])
    return shown + (f" and {len(days) - limit} more" if len(days) > limit else "")
