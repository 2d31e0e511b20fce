"""Plot the CSV from benchmarks/linear.py as speedup over bf16 F.linear against M, as an SVG.

Run: python benchmarks/linear.py --shapes 8192x8192,4096x14336 --m 1,2,4,8,16,32,64,128 --csv linear.csv
     python benchmarks/plot_linear.py linear.csv -o benchmarks/linear_speedup.svg [--title TEXT]
One panel per weight shape, one line per format, plus torch's int4 kernel (tinygemm) as a dashed
line where the CSV has it. Only the standard library is used: the SVG is written by hand.
"""

import argparse
import csv
import math
import sys
from collections import defaultdict
from html import escape

REQUIRED = ("shape", "m", "fmt", "speedup", "bf16_us", "tinygemm_us")
# Fixed colours so a format keeps its colour across plots; unknown formats take the spares in order.
PALETTE = {"INT8": "#1f77b4", "INT4": "#d62728", "INT3": "#ff7f0e", "INT2": "#2ca02c", "INT1": "#9467bd",
           "UINT4": "#8c564b", "E4M3": "#e377c2", "E3M2": "#17becf", "E2M1": "#bcbd22", "E2M1-MX": "#7f7f7f"}
SPARE = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]
TINYGEMM = "tinygemm int4"
PANEL_W, PANEL_H, COLS = 360, 260, 3
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 44  # room inside a panel for tick labels and axis labels


def number(text):
    """The float in a CSV cell, or None for empty, nan, inf or garbage, so such rows are skipped."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_series(path):
    """{shape: {line name: {m: speedup}}}, shapes and formats kept in the order the CSV lists them."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"error: {path} lacks column(s) {', '.join(missing)} (expected the CSV of benchmarks/linear.py --csv)")
        series = defaultdict(dict)
        for row in reader:
            m, shape, fmt = number(row["m"]), row["shape"], row["fmt"]
            if m is None or m <= 0 or not shape or not fmt:
                continue
            speedup = number(row["speedup"])
            if speedup is not None:
                series[shape].setdefault(fmt, {})[int(m)] = speedup
            bf16, tiny = number(row["bf16_us"]), number(row["tinygemm_us"])
            if fmt == "INT4" and bf16 is not None and tiny:
                series[shape].setdefault(TINYGEMM, {})[int(m)] = bf16 / tiny
    return series


def nice_step(top, ticks=5):
    """A 1/2/2.5/5 x 10^k step giving about `ticks` gridlines from 0 to `top`."""
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= raw)


def panel(shape, lines, colours, ox, oy):
    """SVG elements for one shape's panel with its top-left corner at (ox, oy)."""
    w, h = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    x0, y0 = ox + LEFT, oy + TOP  # top-left of the plotting area
    ms = sorted({m for points in lines.values() for m in points})
    lo, hi = math.log2(ms[0]), math.log2(ms[-1])

    def px(m):  # log2 scale; a single M would give a zero-width axis, so it goes in the middle
        return x0 + (w / 2 if hi == lo else (math.log2(m) - lo) / (hi - lo) * w)

    # y starts at 0 and always reaches past 1.0 so the bf16 line is inside the panel.
    peak = 1.05 * max([1.0] + [v for points in lines.values() for v in points.values()])
    step = nice_step(peak)
    y_top = step * math.ceil(peak / step)

    def py(v):
        return y0 + h - v / y_top * h

    title = shape.replace("x", " x ", 1)
    out = [f'<text x="{x0 + w / 2:.1f}" y="{oy + 18}" text-anchor="middle" font-weight="bold">{escape(title)}</text>']
    for i in range(int(round(y_top / step)) + 1):
        v = i * step
        out.append(f'<line x1="{x0}" y1="{py(v):.1f}" x2="{x0 + w}" y2="{py(v):.1f}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{x0 - 5}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for m in ms:
        out.append(f'<line x1="{px(m):.1f}" y1="{y0}" x2="{px(m):.1f}" y2="{y0 + h}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{px(m):.1f}" y="{y0 + h + 15}" text-anchor="middle">{m}</text>')
    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#888"/>')
    # Speedup 1.0 is where a format merely matches bf16: the line that matters most when reading the plot.
    out.append(f'<line x1="{x0}" y1="{py(1):.1f}" x2="{x0 + w}" y2="{py(1):.1f}" stroke="#444" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{x0 + w - 4}" y="{py(1) - 4:.1f}" text-anchor="end" fill="#444">bf16</text>')
    for name, points in lines.items():
        xy = [(px(m), py(points[m])) for m in sorted(points)]
        dash = ' stroke-dasharray="6,3"' if name == TINYGEMM else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colours[name]}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colours[name]}"/>' for x, y in xy]
    out.append(f'<text x="{x0 + w / 2:.1f}" y="{y0 + h + 34}" text-anchor="middle">M (rows of x)</text>')
    out.append(f'<text transform="translate({ox + 14},{y0 + h / 2:.1f}) rotate(-90)" text-anchor="middle">'
               'speedup over bf16 F.linear</text>')
    return out


def render(series, title):
    """The whole SVG document: title, shared legend, then the panels in a grid of up to COLS per row."""
    names = list(dict.fromkeys(n for lines in series.values() for n in lines if n != TINYGEMM))
    if any(TINYGEMM in lines for lines in series.values()):
        names.append(TINYGEMM)
    spare = iter(SPARE * len(names))
    colours = {n: "#333" if n == TINYGEMM else PALETTE.get(n) or next(spare) for n in names}
    cols = min(COLS, len(series))
    width, legend_y = cols * PANEL_W, 48
    out = [f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>']
    x = 10
    for n in names:  # one legend row; entries are spaced by label length so long names do not overlap
        dash = ' stroke-dasharray="6,3"' if n == TINYGEMM else ""
        out.append(f'<line x1="{x}" y1="{legend_y}" x2="{x + 20}" y2="{legend_y}" stroke="{colours[n]}" stroke-width="2"{dash}/>')
        out.append(f'<circle cx="{x + 10}" cy="{legend_y}" r="3" fill="{colours[n]}"/>')
        out.append(f'<text x="{x + 25}" y="{legend_y + 4}">{escape(n)}</text>')
        x += 40 + 7 * len(n)
    top = legend_y + 12
    for i, (shape, lines) in enumerate(series.items()):
        out += panel(shape, lines, colours, (i % COLS) * PANEL_W, top + (i // COLS) * PANEL_H)
    height = top + math.ceil(len(series) / COLS) * PANEL_H
    width = max(width, x)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
            f'<rect width="{width}" height="{height}" fill="white"/>')
    return "\n".join([head] + out + ["</svg>\n"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="file written by benchmarks/linear.py --csv")
    parser.add_argument("-o", "--output", default="benchmarks/linear_speedup.svg")
    parser.add_argument("--title", default="LowBitLinear speedup over bf16 F.linear")
    args = parser.parse_args()
    series = read_series(args.csv)
    if not series:
        sys.exit(f"error: {args.csv} has no rows with a usable m and speedup")
    with open(args.output, "w") as handle:
        handle.write(render(series, args.title))
    print(f"wrote {args.output} ({len(series)} panel(s))")


if __name__ == "__main__":
    main()
