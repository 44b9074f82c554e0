#!/usr/bin/env python3
"""Plots the latest run in each benches/results/*.md as an SVG bar chart.

Each results file is a series of runs appended by benches/run-*.sh: a
"## DATE ..." heading, then a markdown table whose first column names the
server. The chart shows the latest run's throughput column (req/s for echo,
deliveries/s for chat), one bar per server, on a linear scale, with the
heading and the exact figures as labels. No dependencies beyond Python 3.

    benches/plot.py [--results DIR] [--out DIR]

Writes DIR/echo.svg, DIR/chat.svg and DIR/websocket.svg (by default next to the results).
Exits 2, saying why, when a results file has no run with a table.
"""

import argparse
import html
import pathlib
import sys

# Which column to plot in each results file, by its header text.
THROUGHPUT = {"echo.md": "req/s", "chat.md": "deliveries/s", "websocket.md": "deliveries/s"}

BAR_HEIGHT = 28
GAP = 12
LABEL_WIDTH = 190
CHART_WIDTH = 560
VALUE_WIDTH = 150


def latest_run(path):
    """The latest run's heading, column title and (server, value) rows."""
    runs = []
    heading = None
    header = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
            runs.append((heading, None, []))
        elif line.startswith("| server |") and runs:
            header = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ---") or not line.startswith("| ") or header is None:
            continue
        else:
            cells = [c.strip() for c in line.strip("|").split("|")]
            title = THROUGHPUT[path.name]
            if title not in header or len(cells) != len(header):
                continue
            try:
                value = float(cells[header.index(title)])
            except ValueError:
                continue
            heading, _, rows = runs[-1]
            runs[-1] = (heading, title, rows + [(cells[0], value)])
    runs = [r for r in runs if r[2]]
    if not runs:
        raise ValueError(f"{path}: no run with a table of {THROUGHPUT[path.name]}")
    return runs[-1]


def svg(heading, title, rows):
    """A horizontal bar chart of `rows`, labelled, as SVG text."""
    top = 56
    height = top + len(rows) * (BAR_HEIGHT + GAP) + 16
    width = LABEL_WIDTH + CHART_WIDTH + VALUE_WIDTH
    most = max(v for _, v in rows) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="14">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="22" font-weight="bold">{html.escape(title)}, higher is better</text>',
        f'<text x="8" y="42" font-size="12" fill="#555">{html.escape(heading)}</text>',
    ]
    for i, (server, value) in enumerate(rows):
        y = top + i * (BAR_HEIGHT + GAP)
        length = CHART_WIDTH * value / most
        colour = "#2b6cb0" if server.startswith("netlabd") else "#a0aec0"
        out.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT * 0.7:.0f}" '
            f'text-anchor="end">{html.escape(server)}</text>'
        )
        out.append(
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" '
            f'height="{BAR_HEIGHT}" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + BAR_HEIGHT * 0.7:.0f}">'
            f"{value:,.0f}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=pathlib.Path, default=here / "results")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    out_dir = args.out or args.results
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in THROUGHPUT:
        path = args.results / name
        if not path.exists():
            continue
        try:
            heading, title, rows = latest_run(path)
        except ValueError as e:
            print(f"plot: {e}", file=sys.stderr)
            return 2
        target = out_dir / (path.stem + ".svg")
        target.write_text(svg(heading, title, rows), encoding="utf-8")
        print(f"plot: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
