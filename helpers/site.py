"""A static site of executed notebooks: ``results/<profile>/site/index.html`` linking one HTML page per run
(figures inline), readable without Jupyter."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .batch import collect
from .io import atomic_write_text


def _results_of(status: dict[str, Any], results_root: Path, profile: str) -> dict[str, Any] | None:
    """The results JSON a run wrote: in its own folder, or published to ``results/<profile>/``."""
    for path in (Path(status["dir"]) / "results" / profile / f"{status['notebook']}.json",
                 results_root / profile / f"{status['notebook']}.json"):
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _claims_cell(results: dict[str, Any] | None) -> str:
    if not results or not results.get("claims"):
        return "&ndash;"
    claims = results["claims"]
    held = sum(bool(c["holds"]) for c in claims)
    failing = [html.escape(c["name"]) for c in claims if not c["holds"]]
    return f"{held}/{len(claims)} hold" + (f"<br><small>not yet: {'; '.join(failing)}</small>" if failing else "")


def build_site(results_root: Path, profile: str) -> Path:
    """Export every completed or failed run of ``profile`` to HTML and write the index page; returns its path."""
    from nbconvert import HTMLExporter

    site = results_root / profile / "site"
    site.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    rows = []
    for status in collect(results_root, profile):
        notebook = Path(status["dir"]) / f"{status['notebook']}.ipynb"
        page = f"{Path(status['dir']).name}.html"
        if notebook.is_file():
            body, _ = exporter.from_filename(str(notebook))
            atomic_write_text(site / page, body)
            link = f'<a href="{html.escape(page)}">{html.escape(status["notebook"])}</a>'
        else:
            link = html.escape(status["notebook"])
        parameters = html.escape(json.dumps(status.get("parameters", {})))
        error = f"<br><small>{html.escape(status.get('error', ''))}</small>" if status["state"] == "failed" else ""
        rows.append(f"<tr><td>{link}</td><td><code>{parameters}</code></td><td>{status['state']}{error}</td>"
                    f"<td>{status.get('seconds', 0):.0f} s</td>"
                    f"<td>{_claims_cell(_results_of(status, results_root, profile))}</td></tr>")
    index = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Executed notebooks ({html.escape(profile)})</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}</style></head>
<body><h1>Executed notebooks &mdash; profile <code>{html.escape(profile)}</code></h1>
<p>Each link opens a notebook as it ran, with its figures. Claims: the papers' statements checked by the notebook.</p>
<table><tr><th>notebook</th><th>parameters</th><th>state</th><th>time</th><th>claims</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    return atomic_write_text(site / "index.html", index)
