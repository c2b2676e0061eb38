"""A run's history (``history.jsonl``) and its evaluation report (``report/report.md`` + PNG plots).

``History`` appends one JSON object per line: ``{"kind": "train", "step": 50, "loss": 0.41, ...}`` for
training scalars and ``{"kind": "eval", "step": 1000, "iou": 0.62, ...}`` for evaluations. On resume the
loop truncates it to the resumed step (``History.truncate``), so a killed run leaves no entries from the
steps it will redo.

``write_report`` turns a history into ``report.md``: the run (method, steps, key config values), a table of
the final metrics, a table of every evaluation, a summary of each training scalar (first, last, min) and
the plots ``loss_curves.png`` and ``metrics.png``. Plots use matplotlib when it is installed and a small
PIL line plotter otherwise (PIL is a dependency of the backend already), so the report needs nothing new.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

Series = dict[str, list[tuple[float, float]]]
NOT_LOSSES = frozenset({"lr", "steps_per_second"})
"""Training scalars the loop logs that are not losses (kept out of the loss plot)."""
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # fmt: skip


class History:
    """Append-only JSON-lines log of training scalars and evaluations (one object per line)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, kind: str, step: int, values: Mapping[str, float]) -> None:
        """Add a record ``{"kind": kind, "step": step, **values}`` (non-finite values become null)."""
        record: dict[str, Any] = {"kind": kind, "step": int(step)}
        record.update({k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All records (of ``kind`` when given) in order; a torn last line (killed writer) is ignored."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (kind is None or record.get("kind") == kind):
                records.append(record)
        return records

    def truncate(self, step: int) -> None:
        """Drop records after ``step`` (and a torn last line): the state of a run resumed at ``step``."""
        if not self.path.is_file():
            return
        kept = [r for r in self.records() if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)


def series_of(records: Iterable[Mapping[str, Any]]) -> Series:
    """``{name: [(step, value), ...]}`` of the numeric values in ``records`` (kind/step excluded)."""
    series: Series = {}
    for record in records:
        for name, value in record.items():
            if name in ("kind", "step") or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            series.setdefault(name, []).append((float(record["step"]), float(value)))
    return series


# --- plots ---------------------------------------------------------------------------------------


def plot_series(series: Series, path: Path, *, title: str, xlabel: str = "step") -> Path:
    """Draw each series as a line in one PNG at ``path`` (matplotlib if installed, else PIL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_with_pil(series, path, title=title, xlabel=xlabel)
    figure, axes = plt.subplots(figsize=(8, 4.8), dpi=100)
    for name, points in series.items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        axes.plot(xs, ys, label=name, marker="o" if len(points) < 20 else None)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.grid(True, alpha=0.3)
    if series:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not high > low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-12 * abs(high):
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.3g}"


def _plot_with_pil(series: Series, path: Path, *, title: str, xlabel: str) -> Path:
    width, height = 800, 480
    left, right, top, bottom = 70, 180, 40, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((left, 12), title, fill="black", font=font)
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    plot_box = (left, top, width - right, height - bottom)
    draw.rectangle(plot_box, outline="black")
    if not points:
        draw.text((left + 10, top + 10), "no data", fill="black", font=font)
        image.save(path)
        return path
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_low, y_high = min(p[1] for p in points), max(p[1] for p in points)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    if y_high == y_low:
        y_low, y_high = y_low - 0.5 * (abs(y_low) or 1), y_high + 0.5 * (abs(y_high) or 1)
    pad = 0.05 * (y_high - y_low)
    y_low, y_high = y_low - pad, y_high + pad

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = plot_box[0] + (x - x_low) / (x_high - x_low) * (plot_box[2] - plot_box[0])
        py = plot_box[3] - (y - y_low) / (y_high - y_low) * (plot_box[3] - plot_box[1])
        return px, py

    for tick in _nice_ticks(y_low, y_high):
        _, py = to_pixel(x_low, tick)
        draw.line([(plot_box[0], py), (plot_box[2], py)], fill=(225, 225, 225))
        draw.text((5, py - 5), _label(tick), fill="black", font=font)
    for tick in _nice_ticks(x_low, x_high):
        px, _ = to_pixel(tick, y_low)
        draw.line([(px, plot_box[3]), (px, plot_box[3] + 4)], fill="black")
        draw.text((px - 10, plot_box[3] + 8), _label(tick), fill="black", font=font)
    draw.text(((plot_box[0] + plot_box[2]) // 2 - 10, height - 20), xlabel, fill="black", font=font)
    for index, (name, values) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        pixels = [to_pixel(x, y) for x, y in values if math.isfinite(y)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels if len(pixels) < 20 else pixels[-1:]:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        legend_y = top + 14 * index
        draw.line(
            [(width - right + 10, legend_y + 6), (width - right + 30, legend_y + 6)], fill=colour, width=3
        )
        draw.text((width - right + 35, legend_y), name[:22], fill="black", font=font)
    image.save(path)
    return path


# --- markdown -------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.5g}"
        return "—" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(
    directory: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    summary: Mapping[str, Any] | None = None,
    final_metrics: Mapping[str, float] | None = None,
    images: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``report.md``, ``loss_curves.png`` and ``metrics.png`` into ``directory``; return report.md.

    Args:
        records: ``History.records()`` (kinds "train" and "eval").
        title: the heading (e.g. "softras on synthetic bird").
        summary: name -> value lines under the heading (steps, device, key config values).
        final_metrics: the last evaluation (shown first); defaults to the last "eval" record.
        images: PNG files to embed (e.g. the last image grid), linked relative to ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    train_series, eval_series = series_of(train), series_of(evals)
    losses = {k: v for k, v in train_series.items() if k not in NOT_LOSSES}
    plot_series(losses, directory / "loss_curves.png", title="training losses")
    plot_series(eval_series, directory / "metrics.png", title="evaluation metrics")
    if final_metrics is None and evals:
        final_metrics = {k: v for k, v in evals[-1].items() if k not in ("kind", "step")}
    parts = [f"# {title}", ""]
    parts += [f"- **{key}**: {value}" for key, value in (summary or {}).items()]
    parts += ["", "## Final metrics", ""]
    if final_metrics:
        parts.append(_table(["metric", "value"], sorted(final_metrics.items())))
    else:
        parts.append("No evaluation was run.")
    if evals:
        names = sorted({k for r in evals for k in r if k not in ("kind", "step")})
        parts += [
            "",
            "## Evaluations",
            "",
            _table(["step", *names], ([r["step"], *(r.get(n) for n in names)] for r in evals)),
        ]
    parts += ["", "## Training scalars", ""]
    if train_series:
        rows = []
        for name, points in sorted(train_series.items()):
            values = [v for _, v in points]
            rows.append([name, values[0], values[-1], min(values), len(values)])
        parts.append(_table(["scalar", "first", "last", "min", "logged"], rows))
    else:
        parts.append("Nothing was logged.")
    parts += [
        "",
        "## Plots",
        "",
        "![training losses](loss_curves.png)",
        "",
        "![evaluation metrics](metrics.png)",
    ]
    for image in images:
        relative = os.path.relpath(Path(image), directory)
        parts += ["", f"![{Path(image).stem}]({relative})"]
    path = directory / "report.md"
    path.write_text("\n".join(parts) + "\n")
    return path
