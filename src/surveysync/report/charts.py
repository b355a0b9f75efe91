"""The HTML report's charts, drawn by matplotlib as SVG text to put inline in the page.

matplotlib is imported inside the functions that draw (it takes about a second to import),
so every other command, and the report's terminal table, stay fast. No pyplot: each chart is
its own ``Figure`` saved with the SVG backend, so no GUI backend or global figure state is
involved. Text stays text (``svg.fonttype = none``) in the page's own font, so a name in
Hangul renders with whatever font the reader's browser has for it.

Must never reach the network or the disk: every chart comes back as a string.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GREEN, AMBER, RED = "#1a7f37", "#b7791f", "#c53030"
INK, GREY, BLUE = "#1f2328", "#8c959f", "#0969da"
_STYLE: dict[Any, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "surveysync",  # the same data draws the same file
    "font.size": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": GREY,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
}
# Inches at 96 px: drawn for a page column of ~35 em, so text stays legible when a phone
# scales the chart down to its width (the page caps it at 42 em on a wide screen).
WIDTH = 5.6
LINE_COLOURS = ["#0969da", "#8250df", "#bf3989", "#1b7c83", "#9a6700", "#57606a"]


@dataclass(frozen=True, slots=True)
class Point:
    """One NPS with its interval, as a chart shows it."""

    label: str
    nps: float | None
    low: float | None
    high: float | None
    too_few: bool


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_STYLE), warnings.catch_warnings():
        # Layout uses matplotlib's own font, which lacks e.g. Hangul; the browser draws the
        # text (fonttype none) with a font that has it, so the warning is noise here.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        yield Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure, name: str, title: str) -> str:
    """The figure as an inline <svg> that scales to its container, ids unique to ``name``."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\sid="([^"]+)"', rf' id="{name}-\1"', text)
    text = re.sub(r"#([A-Za-z_][\w.-]*)\)", rf"#{name}-\1)", text)  # url(#id)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', text)
    root = re.match(r"<svg[^>]*>", text)
    assert root is not None
    attributes = re.sub(r'\s(width|height)="[^"]*"', "", root.group(0)[4:-1])
    label = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return f'<svg{attributes} role="img" aria-label="{label}">' + text[root.end() :]


def _empty(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes, color=GREY)
    axes.set_xticks([])
    axes.set_yticks([])


def _nps_axis(axes: Axes) -> None:
    axes.set_ylim(-100, 100)
    axes.axhline(0, color=GREY, linewidth=0.8)
    axes.set_ylabel("NPS")
    axes.grid(axis="y", color="#d0d7de", linewidth=0.5)


def trend(overall: Sequence[Point], lines: Mapping[str, Sequence[Point]]) -> str:
    """NPS per month: the store with its interval as a band, each location as a line;
    a hollow marker is a month with too few answers to trust."""
    with _figure(WIDTH, 3.8) as figure:
        axes = figure.subplots()
        if not any(p.nps is not None for p in overall):
            _empty(axes, "no answers in this period")
            return _svg(figure, "trend", "NPS per month: no answers")
        xs = list(range(len(overall)))
        _band(axes, xs, overall)
        for colour, (name, points) in zip(_cycle(), lines.items(), strict=False):
            _line(axes, xs, points, colour, name, width=1.2)
        _line(axes, xs, overall, INK, "all locations", width=2.4)
        _nps_axis(axes)
        axes.set_xticks(xs, [p.label for p in overall])
        figure.legend(loc="outside lower center", frameon=False, ncols=min(3, len(lines) + 2))
        return _svg(figure, "trend", "NPS per month, overall and per location")


def _cycle() -> Iterator[str]:
    while True:
        yield from LINE_COLOURS


def _band(axes: Axes, xs: Sequence[int], points: Sequence[Point]) -> None:
    shown = [(x, p.low, p.high) for x, p in zip(xs, points, strict=True)]
    kept = [(x, low, high) for x, low, high in shown if low is not None and high is not None]
    if kept:
        axes.fill_between(
            [x for x, _, _ in kept],
            [low for _, low, _ in kept],
            [high for _, _, high in kept],
            color=INK,
            alpha=0.08,
            linewidth=0,
            label="90 % interval",
        )


def _line(
    axes: Axes, xs: Sequence[int], points: Sequence[Point], colour: str, name: str, width: float
) -> None:
    shown = [(x, p.nps, p.too_few) for x, p in zip(xs, points, strict=True) if p.nps is not None]
    if not shown:
        return
    xs_all, ys_all = [x for x, _, _ in shown], [y for _, y, _ in shown]
    axes.plot(xs_all, ys_all, color=colour, lw=width, label=name)
    for few, face in ((False, colour), (True, "white")):
        marks = [(x, y) for x, y, too_few in shown if too_few is few]
        if marks:
            xs_, ys_ = [x for x, _ in marks], [y for _, y in marks]
            axes.scatter(xs_, ys_, color=colour, facecolor=face, zorder=3, s=22)


def distribution(scores: Sequence[int]) -> str:
    """How many counted answers gave each score, coloured by category."""
    with _figure(WIDTH, 3.0) as figure:
        axes = figure.subplots()
        colours = [RED] * 7 + [AMBER] * 2 + [GREEN] * 2
        bars = axes.bar(range(11), scores, color=colours)
        axes.bar_label(bars, fontsize=9, color=INK)
        axes.set_xticks(range(11))
        axes.set_xlabel("score: 0–6 detractor, 7–8 passive, 9–10 promoter")
        axes.set_ylabel("answers")
        axes.margins(y=0.15)
        return _svg(figure, "scores", "Answers per score, 0 to 10")


def technicians(points: Sequence[Point]) -> str:
    """NPS per technician with its 90 % interval, best first; those with too few answers in
    grey at the bottom, unranked."""
    height = 1.2 + 0.34 * max(1, len(points))
    with _figure(WIDTH, height) as figure:
        axes = figure.subplots()
        if not points:
            _empty(axes, "no surveys in this period")
            return _svg(figure, "technicians", "NPS per technician: none")
        ys = list(range(len(points)))[::-1]
        for y, point in zip(ys, points, strict=True):
            _interval_mark(axes, y, point)
        axes.set_yticks(ys, [p.label + (" (too few)" if p.too_few else "") for p in points])
        axes.set_xlim(-100, 100)
        axes.axvline(0, color=GREY, linewidth=0.8)
        axes.set_xlabel("NPS, with its 90 % interval")
        axes.grid(axis="x", color="#d0d7de", linewidth=0.5)
        return _svg(figure, "technicians", "NPS per technician with 90 % intervals")


def _interval_mark(axes: Axes, y: int, point: Point) -> None:
    if point.nps is None or point.low is None or point.high is None:
        return
    colour = GREY if point.too_few else BLUE
    axes.plot([point.low, point.high], [y, y], color=colour, lw=2, solid_capstyle="butt")
    axes.scatter([point.nps], [y], color=colour, zorder=3, s=28)


def response_rate(labels: Sequence[str], rates: Sequence[float | None]) -> str:
    """Answers per survey sent, per month or week, in percent."""
    with _figure(WIDTH, 3.0) as figure:
        axes = figure.subplots()
        if not labels:
            _empty(axes, "no surveys in this period")
            return _svg(figure, "rate", "Response rate: no surveys")
        values = [0.0 if r is None else 100 * r for r in rates]
        bars = axes.bar(range(len(labels)), values, color=BLUE)
        axes.bar_label(bars, [f"{v:.0f}" for v in values], fontsize=8, color=INK)
        step = max(1, -(-len(labels) // 8))  # at most 8 labels
        axes.set_xticks(range(0, len(labels), step), list(labels)[::step], rotation=45, ha="right")
        axes.set_ylabel("% of surveys answered")
        axes.margins(y=0.15)
        return _svg(figure, "rate", "Response rate over time")
