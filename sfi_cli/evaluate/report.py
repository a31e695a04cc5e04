"""An evaluation's results as a terminal table and as one self-contained HTML file (plots and frame strips
embedded as base64 PNGs, so the file can be mailed or archived alone). matplotlib is imported only here."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

# (result key, column title, format); a missing score (None) shows as '-'.
COLUMNS = (
    ("psnr", "PSNR dB", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"),
    ("end_psnr", "ends PSNR", "{:.1f}/{:.1f}"), ("seam_jump", "seam jump", "{:+.2f}"),
    ("flicker", "flicker", "{:.2f}"), ("smoothness", "smooth", "{:.4f}"),
    ("dynamic_degree", "motion px", "{:.2f}"), ("seconds_per_frame", "s/frame", "{:.3f}"),
    ("lpips", "LPIPS", "{:.4f}"), ("end_lpips", "ends LPIPS", "{:.3f}/{:.3f}"), ("fid", "FID", "{:.2f}"),
    ("clip_truth", "CLIP-I", "{:.4f}"), ("clip_ends", "CLIP ends", "{:.4f}"),
)


def cell(scores: dict[str, Any], key: str, form: str) -> str:
    value = scores.get(key)
    if value is None:
        return "-"
    return form.format(*value) if isinstance(value, list) else form.format(value)


def rows(summary: dict[str, Any]) -> list[list[str]]:
    """Header and one row per engine (and the real frames, in video mode) of the columns some engine has."""
    named = list(summary["engines"].items()) + ([("real frames", summary["real"])] if "real" in summary else [])
    columns = [c for c in COLUMNS if any(c[0] in scores for _, scores in named)]
    table = [["engine", *(title for _, title, _ in columns)]]
    for name, scores in named:
        table.append([name, *(cell(scores, key, form) for key, _, form in columns)])
    return table


def text_table(summary: dict[str, Any]) -> str:
    table = rows(summary)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths)))
             for row in table]
    what = (f"{summary['in_betweens']} in-betweens between two images" if summary["mode"] == "pair" else
            f"{summary['in_betweens']} held-out frame(s) in each of {summary['gaps']} gaps")
    if summary.get("gaps_over_cuts_left_out"):
        what += f" ({summary['gaps_over_cuts_left_out']} over a cut left out; cuts at {', '.join(map(str, summary['cuts']))})"
    notes = [f"{name}: {note}" for name, scores in summary["engines"].items() for note in scores["fallbacks"]]
    return "\n".join([f"{summary['source']} ({summary['size'][0]}x{summary['size'][1]}): {what}", *lines,
                      f"flicker: mean |frame difference| (levels); smooth: every other frame re-made by "
                      f"{summary['smoothness_engine']} ('-' for it with one in-between: it would re-make its own frame); motion px: mean of the largest 5% flow magnitudes",
                      *notes])


def png_base64(figure_or_frame) -> str:
    """A matplotlib figure or an RGB array as a base64 PNG."""
    buffer = io.BytesIO()
    if isinstance(figure_or_frame, np.ndarray):
        from PIL import Image

        Image.fromarray(figure_or_frame).save(buffer, format="PNG")
    else:
        figure_or_frame.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of each plot: per-frame PSNR (video mode) and frame-to-frame change."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a render box has none
    from matplotlib import pyplot

    made = []
    if summary["mode"] == "video":
        figure, axes = pyplot.subplots(figsize=(8, 3.2))
        for name, scores in summary["engines"].items():
            axes.plot(scores["per_frame"]["frame"], scores["per_frame"]["psnr"], marker="o", ms=3, label=name)
        axes.set(xlabel="held-out frame", ylabel="PSNR dB")
        axes.legend()
        made.append(("PSNR of each made frame against the real one", png_base64(figure)))
        pyplot.close(figure)
    figure, axes = pyplot.subplots(figsize=(8, 3.2))
    named = list(summary["engines"].items()) + ([("real frames", summary["real"])] if "real" in summary else [])
    for name, scores in named:
        axes.plot(scores["flicker_steps"], marker=".", label=name, linestyle="--" if name == "real frames" else "-")
    axes.set(xlabel="step (frame to next, gaps one after another)", ylabel="mean |difference| (levels)")
    axes.legend()
    made.append(("Flicker over time: change from each frame to the next", png_base64(figure)))
    pyplot.close(figure)
    return made


def thumbnail(frame: np.ndarray, width: int = 200) -> np.ndarray:
    from PIL import Image

    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))


def strip_cells(first: np.ndarray, made: list[np.ndarray], last: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Labelled frames of one run, at most ``run.STRIP_FRAMES`` (evenly sampled, ends kept)."""
    from sfi_cli.evaluate.run import STRIP_FRAMES

    run = [("A", first), *((f"{i + 1}", frame) for i, frame in enumerate(made)), ("B", last)]
    if len(run) > STRIP_FRAMES:
        run = [run[round(i * (len(run) - 1) / (STRIP_FRAMES - 1))] for i in range(STRIP_FRAMES)]
    return run


def html_report(summary: dict[str, Any], strips: dict[str, list[np.ndarray]], ends: tuple[np.ndarray, np.ndarray]) -> str:
    escape = html.escape
    table = rows(summary)
    head = "".join(f"<th>{escape(t)}</th>" for t in table[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(t)}</td>" for t in row) + "</tr>" for row in table[1:])
    figures = "".join(f"<h2>{escape(title)}</h2><img alt='{escape(title)}' src='data:image/png;base64,{data}'>"
                      for title, data in plots(summary))
    strip_rows = []
    for name, made in strips.items():
        cells = "".join(f"<figure><img src='data:image/png;base64,{png_base64(thumbnail(frame))}'>"
                        f"<figcaption>{escape(label)}</figcaption></figure>" for label, frame in strip_cells(ends[0], made, ends[1]))
        strip_rows.append(f"<div class='strip'><h3>{escape(name)}</h3>{cells}</div>")
    notes = "".join(f"<li>{escape(name)}: {escape(note)}</li>" for name, s in summary["engines"].items() for note in s["fallbacks"])
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sfi eval: {escape(summary['source'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}.strip{{display:flex;gap:4px;align-items:flex-start}}.strip h3{{width:8em;flex:none}}
figure{{margin:0}}figcaption{{text-align:center;font-size:small}}</style></head><body>
<h1>sfi eval</h1><pre>{escape(text_table(summary))}</pre>
<table><tr>{head}</tr>{body}</table>{'<ul>' + notes + '</ul>' if notes else ''}
{figures}<h2>Frames of the first gap, each engine side by side</h2>{''.join(strip_rows)}
</body></html>
"""
