# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""The deploy metrics as one self-contained HTML page: figures and plots in inline SVG, no script, nothing
loaded from elsewhere, so it opens from a file, a mail or a CI artefact as it is."""

from __future__ import annotations

import html

WIDTH, HEIGHT, PAD = 640, 220, 36


def _bars(title, labels, series):
    """Grouped bars: ``series`` is ``[(name, color, values)]``."""
    top = max([1, *[v for serie in series for v in serie[2]]])
    slot = (WIDTH - 2 * PAD) / max(1, len(labels))
    width = slot * 0.8 / max(1, len(series))
    parts = []
    for i, label in enumerate(labels):
        for j, (name, color, values) in enumerate(series):
            h = (HEIGHT - 2 * PAD) * values[i] / top
            x = PAD + i * slot + slot * 0.1 + j * width
            parts.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{width:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{html.escape(name)} {html.escape(label)}: {values[i]}</title></rect>"
            )
        parts.append(
            f'<text x="{PAD + i * slot + slot / 2:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
            f'text-anchor="middle">{html.escape(label[5:])}</text>'
        )
    legend = " ".join(f'<tspan fill="{color}">&#9632; {html.escape(name)}</tspan>' for name, color, _values in series)
    return _svg(title, parts, legend, top)


def _line(title, labels, values, color):
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    top = max([1, *[value for _index, value in points]])
    step = (WIDTH - 2 * PAD) / max(1, len(labels) - 1)
    coords = [(PAD + i * step, HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top) for i, v in points]
    parts = [f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
             + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>']  # fmt: skip
    parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in coords]
    parts += [
        f'<text x="{PAD + i * step:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle">'
        f"{html.escape(label[5:])}</text>"
        for i, label in enumerate(labels)
    ]
    return _svg(title, parts, f'<tspan fill="{color}">&#9632; median seconds</tspan>', top)


def _svg(title, parts, legend, top):
    axis = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" font-size="10" text-anchor="end">{top:g}</text>'
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{html.escape(title)}"><text x="{PAD}" y="18" font-size="13" font-weight="bold">'
        f'{html.escape(title)}</text><text x="{WIDTH - PAD}" y="18" font-size="11" text-anchor="end">'
        f"{legend}</text>{axis}{''.join(parts)}</svg></figure>"
    )


def render(app, figures, text_lines):
    """The page for ``app``: its figures as text, then the plots of the trend."""
    trend = figures["trend"]
    labels = [t["period"] for t in trend]
    plots = [
        _bars(
            f"Deploys and rollbacks per {figures['period']}",
            labels,
            [
                ("deploys", "#2a7ab0", [t["deploys"] for t in trend]),
                ("rollbacks", "#c0392b", [t["rollbacks"] for t in trend]),
            ],
        ),
        _line(f"Deploy duration per {figures['period']}", labels, [t["median_duration_s"] for t in trend], "#27ae60"),
    ]
    body = "\n".join(html.escape(line) for line in text_lines)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(app)}: deploy metrics</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:720px}pre{background:#f4f4f4;padding:1em}"
        "figure{margin:1.5em 0}</style></head><body>"
        f"<h1>{html.escape(app)}: deploy metrics</h1><pre>{body}</pre>{''.join(plots)}</body></html>\n"
    )
