"""The report's HTML skeleton and CSS (inline: the file opens offline, on its own)."""

from __future__ import annotations

GENERATOR = "visae report"
"""Content of the <meta name="generator"> tag; a file without it is never overwritten silently."""

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
main { max-width: 1320px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #666; margin: 0 0 16px; }
table.kv { border-collapse: collapse; } table.kv td { padding: 2px 14px 2px 0; vertical-align: top; }
table.kv td:first-child { color: #666; }
table.grid { border-collapse: collapse; margin: 8px 0; } table.grid th, table.grid td { border: 1px solid #ddd; padding: 3px 10px; text-align: right; }
table.grid th { background: #f0f0f0; } table.grid td:first-child, table.grid th:first-child, table.grid td:last-child, table.grid th:last-child { text-align: left; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
.card h4 { margin: 0 0 4px; font-size: 14px; } .card .meta { color: #555; font-size: 12px; margin-bottom: 6px; }
.thumbs { display: flex; gap: 4px; } .thumbs figure { margin: 0; text-align: center; font-size: 11px; color: #666; }
.thumbs img { display: block; border-radius: 3px; }
.chip { display: inline-block; background: #eef; border-radius: 10px; padding: 1px 8px; margin: 2px; font-size: 12px; }
.big { font-size: 18px; } .note { color: #777; font-size: 12px; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 11px; font-weight: 600; }
.badge.border { background: #fde2c8; color: #8a4b00; }
.unlabelled { color: #8a8a8a; font-style: italic; } .guess { color: #777; font-size: 12px; font-weight: normal; }
.dup { color: #a05a00; } ul.legend li { margin: 4px 0; } ul.legend img { vertical-align: middle; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{generator}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head><body><main>
{body}
</main></body></html>
"""
