#!/usr/bin/env python3
"""Draws FlexiProxy's icons: the app icon in every size Tauri's bundler asks for, and the tray icon
in its three states (running: the logo; stopped: the logo in greys; error: the logo with a red
badge carrying a white "!").

The logo is a rounded square with an indigo-to-cyan gradient and a white "fan-out" glyph: one
line comes in from the left (the one local address a tool talks to), meets a node, and leaves as
three branches (the providers behind it). Shapes are signed-distance functions, so every size is
rendered directly (crisp at 32 px, no resampling blur) with analytic anti-aliasing, and the script
needs nothing beyond the Python standard library. Tauri needs RGBA PNGs (an RGB one makes
tauri-build panic), so every PNG here is 8-bit RGBA.

Run it from anywhere: `python3 icons/generate.py`; it rewrites the files beside itself.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Gradient end points (top-left to bottom-right) and the glyph colour.
TOP_LEFT = (79, 70, 229)  # indigo
BOTTOM_RIGHT = (6, 182, 212)  # cyan
GLYPH = (255, 255, 255)
# The stopped tray icon: the same shapes in greys, so it reads as "off" next to coloured icons.
GREY_TOP_LEFT = (112, 116, 124)
GREY_BOTTOM_RIGHT = (160, 164, 172)
# The error badge (bottom right) and the ring of transparency that separates it from the logo.
BADGE = (220, 38, 38)  # red
BADGE_CENTRE = (0.76, 0.76)
BADGE_RADIUS = 0.22
BADGE_GAP = 0.05

# Geometry in unit coordinates (0..1, y down).
MARGIN = 0.06
CORNER = 0.21
HUB = (0.45, 0.5)
SOURCE = (0.2, 0.5)
BRANCH_ENDS = ((0.75, 0.27), (0.79, 0.5), (0.75, 0.73))


def rounded_rect(px: float, py: float, margin: float, radius: float) -> float:
    """Signed distance to a rounded square inset by `margin` (negative inside)."""
    half = 0.5 - margin
    qx = abs(px - 0.5) - half + radius
    qy = abs(py - 0.5) - half + radius
    outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
    inside = min(max(qx, qy), 0.0)
    return outside + inside - radius


def capsule(px: float, py: float, a: tuple[float, float], b: tuple[float, float], r: float) -> float:
    """Signed distance to a line segment from `a` to `b` with round caps of radius `r`."""
    ax, ay = a
    bx, by = b
    pax, pay = px - ax, py - ay
    bax, bay = bx - ax, by - ay
    h = max(0.0, min(1.0, (pax * bax + pay * bay) / (bax * bax + bay * bay)))
    return math.hypot(pax - bax * h, pay - bay * h) - r


def circle(px: float, py: float, c: tuple[float, float], r: float) -> float:
    return math.hypot(px - c[0], py - c[1]) - r


def glyph(px: float, py: float, stroke: float, dot: float) -> float:
    """Signed distance to the fan-out glyph: stem, hub, three branches, a dot at each end."""
    d = capsule(px, py, SOURCE, HUB, stroke)
    d = min(d, circle(px, py, HUB, dot * 1.15))
    d = min(d, circle(px, py, SOURCE, dot))
    for end in BRANCH_ENDS:
        d = min(d, capsule(px, py, HUB, end, stroke))
        d = min(d, circle(px, py, end, dot))
    return d


def coverage(distance: float, pixel: float) -> float:
    """Fraction of a pixel covered by a shape, from the signed distance at its centre."""
    return max(0.0, min(1.0, 0.5 - distance / pixel))


def exclamation(px: float, py: float) -> float:
    """Signed distance to a "!" centred in the error badge."""
    cx, cy = BADGE_CENTRE
    r = BADGE_RADIUS
    bar = capsule(px, py, (cx, cy - 0.52 * r), (cx, cy + 0.08 * r), 0.13 * r)
    return min(bar, circle(px, py, (cx, cy + 0.5 * r), 0.15 * r))


def render(
    size: int,
    stroke: float = 0.036,
    dot: float = 0.068,
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] = (TOP_LEFT, BOTTOM_RIGHT),
    badge: bool = False,
) -> bytes:
    """The logo as raw RGBA rows, `size` x `size`; `badge` adds the red error badge."""
    top_left, bottom_right = colours
    pixel = 1.0 / size
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # PNG filter type "None" for this row
        py = (y + 0.5) * pixel
        for x in range(size):
            px = (x + 0.5) * pixel
            bg = coverage(rounded_rect(px, py, MARGIN, CORNER), pixel)
            if badge:
                # Cut a ring around the badge out of the logo, then lay the badge on top.
                to_badge = circle(px, py, BADGE_CENTRE, BADGE_RADIUS)
                bg *= 1.0 - coverage(to_badge - BADGE_GAP, pixel)
                on_badge = coverage(to_badge, pixel)
                if on_badge > 0.0:
                    mark = coverage(exclamation(px, py), pixel)
                    red = [c + (w - c) * mark for c, w in zip(BADGE, GLYPH)]
                    rows += bytes(round(c) for c in red) + bytes([round(255 * on_badge)])
                    continue
            if bg == 0.0:
                rows += b"\x00\x00\x00\x00"
                continue
            t = (px + py) / 2.0
            base = [a + (b - a) * t for a, b in zip(top_left, bottom_right)]
            g = coverage(glyph(px, py, stroke, dot), pixel)
            colour = [c + (w - c) * g for c, w in zip(base, GLYPH)]
            rows += bytes(round(c) for c in colour) + bytes([round(255 * bg)])
    return bytes(rows)


def png(size: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def ico(images: list[tuple[int, bytes]]) -> bytes:
    """A Windows .ico holding PNG-compressed images (supported since Vista)."""
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, data in images:
        dim = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        out += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    return out + b"".join(data for _, data in images)


def icns(images: list[tuple[bytes, bytes]]) -> bytes:
    """A macOS .icns holding PNG images under their type codes (ic07 = 128, ic08 = 256, ic09 = 512)."""
    body = b"".join(kind + struct.pack(">I", 8 + len(data)) + data for kind, data in images)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> None:
    sizes = {32: "32x32.png", 128: "128x128.png", 256: "128x128@2x.png", 512: "icon.png"}
    rendered: dict[int, bytes] = {}
    for size, name in sizes.items():
        rendered[size] = png(size, render(size))
        (HERE / name).write_bytes(rendered[size])
    # The tray shows the icon at 16-24 px: thicker strokes keep the glyph readable there.
    tray = {"stroke": 0.05, "dot": 0.085}
    (HERE / "tray.png").write_bytes(png(64, render(64, **tray)))
    grey = (GREY_TOP_LEFT, GREY_BOTTOM_RIGHT)
    (HERE / "tray-stopped.png").write_bytes(png(64, render(64, **tray, colours=grey)))
    (HERE / "tray-error.png").write_bytes(png(64, render(64, **tray, badge=True)))
    small = {size: png(size, render(size)) for size in (16, 48)}
    (HERE / "icon.ico").write_bytes(
        ico([(16, small[16]), (32, rendered[32]), (48, small[48]), (256, rendered[256])])
    )
    (HERE / "icon.icns").write_bytes(
        icns([(b"ic07", rendered[128]), (b"ic08", rendered[256]), (b"ic09", rendered[512])])
    )


if __name__ == "__main__":
    main()
