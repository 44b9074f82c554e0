#!/usr/bin/env python3
"""Draws a soak's CSV (benches/soak.sh) as an SVG and judges whether netlabd grew.

One panel each for netlabd's RSS, open descriptors, threads and child
processes over time; the connections the generator held are drawn in grey
on the descriptors panel (each connection is one descriptor of netlabd's).
A last panel, not judged, shows the bytes waiting unread in netlabd's TCP
sockets and in the generator's: when a check fails, the side with bytes
piling up is the one that was behind.

The rule, on the samples taken in steady state (every pool at its size):
split them into thirds by time; the first third is warm-up and is not
judged; the median of the last third may exceed the median of the second
third by at most the metric's tolerance:

    RSS       5% of the second third's median (and at least 4 MiB); the
              same for each of its parts, anonymous (heap and stacks)
              and file-backed (the binary's pages, which rise a little
              as code first run is paged in)
    fds       0.5% of the second third's median (and at least 16)
    threads   5
    children  5

Why these: under churn every sample catches some connections between
close and reopen, so fds, threads (the thread model's) and children (the
fork model's) wobble by a few around their level; RSS moves with the
allocator's free lists and the buffers of whichever connections just got a
large message. A leak grows with the work done, and in ten minutes of churn
(tens of thousands of connections, twenty reloads) even one descriptor,
thread or child per hundred connections, or a few hundred bytes per
connection, is far past these bounds. The exact check, that every
descriptor, thread and child is released once the load is gone, is the
generator's ("drained" row).

    benches/soak_plot.py CSV --out SVG [--title TEXT]

Prints the judgement as a markdown table; exits 1 when something grew, 2
when the CSV cannot be judged (too few steady samples, unreadable).
No dependency beyond Python 3.
"""

import argparse
import csv
import html
import pathlib
import statistics
import sys

METRICS = [
    # column, label, scale (display), unit, relative tolerance, absolute floor
    ("rss_kib", "RSS", 1 / 1024, "MiB", 0.05, 4 * 1024),
    # RSS's parts, by the same rule: which one rises says what grows.
    ("rss_anon_kib", "RSS, anonymous (heap, stacks)", 1 / 1024, "MiB", 0.05, 4 * 1024),
    ("rss_file_kib", "RSS, file-backed (the binary's pages)", 1 / 1024, "MiB", 0.05, 4 * 1024),
    ("fds", "open descriptors", 1, "", 0.005, 16),
    ("threads", "threads", 1, "", 0.0, 5),
    ("children", "child processes", 1, "", 0.0, 5),
]
MIN_STEADY = 6

# Drawn, not judged: (column, label, unit, column drawn dashed beside it,
# what the dashed line is). Each judged metric is drawn too.
PANELS = [
    ("rss_kib", "RSS", "MiB", None, None),
    ("rss_anon_kib", "RSS, anonymous: heap and stacks", "MiB", "rss_file_kib", "dashed: file-backed, the binary's pages"),
    ("fds", "open descriptors", "", "conns", "dashed: connections the generator held"),
    ("threads", "threads", "", None, None),
    ("children", "child processes", "", None, None),
    ("unread_kib", "bytes unread in its TCP sockets", "KiB", "gen_unread_kib", "dashed: unread in the generator's (who is behind)"),
]

WIDTH = 860
PANEL = 170
LEFT = 80
RIGHT = 40
TOP = 60
GAP = 44


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no samples")
    for r in rows:
        for key, value in r.items():
            if key != "phase":
                r[key] = float(value)
    return rows


def judge(rows):
    """(verdict lines as markdown, ok) for the steady samples of `rows`."""
    steady = [r for r in rows if r["phase"] == "steady"]
    if len(steady) < MIN_STEADY:
        raise ValueError(f"only {len(steady)} steady samples; at least {MIN_STEADY} are needed to judge")
    third = len(steady) // 3
    second, last = steady[third : 2 * third], steady[len(steady) - third :]
    lines = [
        f"Steady state: {len(steady)} samples from {steady[0]['t_s']:.0f} s to {steady[-1]['t_s']:.0f} s; "
        f"warm-up is the first third, then the median of the second third "
        f"({second[0]['t_s']:.0f}-{second[-1]['t_s']:.0f} s) is compared with the last third's "
        f"({last[0]['t_s']:.0f}-{last[-1]['t_s']:.0f} s).",
        "",
        "| netlabd | start of steady state | median, 2nd third | median, last third | end | growth | allowed | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    ok = True
    for column, label, scale, unit, rel, floor in METRICS:
        if column not in steady[0]:
            continue  # a CSV from before the column was sampled
        b = statistics.median(r[column] for r in second)
        c = statistics.median(r[column] for r in last)
        allowed = max(b * rel, floor)
        grew = c - b > allowed
        ok &= not grew

        def show(v):
            return f"{v * scale:,.1f} {unit}".strip() if unit else f"{v:,.0f}"

        lines.append(
            f"| {label} | {show(steady[0][column])} | {show(b)} | {show(c)} | {show(steady[-1][column])} "
            f"| {show(c - b)} | {show(allowed)} | {'GREW' if grew else 'flat'} |"
        )
    return lines, ok


def polyline(points, colour, width=1.6, dash=None):
    d = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="{width}"{extra}/>'


def svg(rows, title, subtitle):
    panels = [p for p in PANELS if p[0] in rows[0]]
    height = TOP + len(panels) * (PANEL + GAP) + 10
    t_max = max(r["t_s"] for r in rows) or 1.0
    plot_w = WIDTH - LEFT - RIGHT
    steady = [r for r in rows if r["phase"] == "steady"]
    loaded = [r for r in rows if r["phase"] in ("ramp", "steady")]
    drained = [r for r in rows if r["phase"] == "drained"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="8" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="8" y="40" fill="#555">{html.escape(subtitle)}</text>',
    ]

    def x_of(t):
        return LEFT + plot_w * t / t_max

    thirds = []
    if len(steady) >= MIN_STEADY:
        third = len(steady) // 3
        thirds = [steady[third]["t_s"], steady[len(steady) - third]["t_s"]]
    for i, (column, label, unit, beside, beside_label) in enumerate(panels):
        top = TOP + i * (PANEL + GAP)
        scale = 1 / 1024 if unit == "MiB" else 1
        values = [r[column] * scale for r in rows]
        dashed = [r[beside] * scale for r in loaded] if beside and beside in rows[0] else []
        high = max(values + dashed) * 1.1 or 1.0

        def y_of(v):
            return top + PANEL - PANEL * v / high

        out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="#fafafa" stroke="#ccc"/>')
        if steady:
            x0 = x_of(steady[0]["t_s"])
            out.append(f'<rect x="{LEFT}" y="{top}" width="{x0 - LEFT:.1f}" height="{PANEL}" fill="#eee"/>')
        for t in thirds:
            out.append(
                f'<line x1="{x_of(t):.1f}" y1="{top}" x2="{x_of(t):.1f}" y2="{top + PANEL}" '
                f'stroke="#999" stroke-dasharray="4 3"/>'
            )
        for frac in (0, 0.5, 1):
            v = high * frac
            y = y_of(v)
            text = f"{v:,.0f}" if high >= 10 else f"{v:.1f}"
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{text}</text>')
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        name = f"{label} ({unit})" if unit else label
        out.append(f'<text x="{LEFT}" y="{top - 6}" font-weight="bold">netlabd {html.escape(name)}</text>')
        if dashed:
            out.append(polyline([(x_of(r["t_s"]), y_of(v)) for r, v in zip(loaded, dashed)], "#a0aec0", 1.2, "5 3"))
            out.append(
                f'<text x="{LEFT + plot_w}" y="{top - 6}" text-anchor="end" fill="#718096">'
                f"{html.escape(beside_label)}</text>"
            )
        out.append(polyline([(x_of(r["t_s"]), y_of(v)) for r, v in zip(rows, values)], "#2b6cb0"))
        axis_y = top + PANEL + 14
        step = next(s for s in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60) if t_max / 60 / s <= 8) * 60
        k = 0
        while k * step <= t_max:
            out.append(
                f'<text x="{x_of(k * step):.1f}" y="{axis_y}" text-anchor="middle" fill="#555">{k * step / 60:g} min</text>'
            )
            k += 1
        if drained and loaded:
            x = x_of(loaded[-1]["t_s"])
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + PANEL}" stroke="#718096" stroke-dasharray="1 3"/>')
            out.append(
                f'<text x="{x - 4:.1f}" y="{top + PANEL - 6}" text-anchor="end" fill="#718096">'
                f"end of load; last point: every connection closed</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--title", default="netlabd soak")
    args = parser.parse_args(argv)
    try:
        rows = read(args.csv)
    except (OSError, ValueError, KeyError) as e:
        print(f"soak_plot: {e}", file=sys.stderr)
        return 2
    try:
        lines, ok = judge(rows)
    except ValueError as e:
        lines, ok = [f"Not judged: {e}."], None
    subtitle = "grey: ramp (pools filling); dashed lines: steady state in thirds (warm-up | compared | compared)"
    args.out.write_text(svg(rows, args.title, subtitle), encoding="utf-8")
    print("\n".join(lines))
    if ok is None:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
