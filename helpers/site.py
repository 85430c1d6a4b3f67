"""A static site of executed notebooks: ``results/<profile>/site/index.html`` linking one HTML page per run
(figures inline), readable without Jupyter and without a network.

Equations are typeset by a copy of MathJax 2 that ships with the ``jupyter-server-mathjax`` package, placed in
``site/mathjax/`` (no CDN). Widgets need a live kernel; every page says how to open its notebook in JupyterLab.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from .batch import collect
from .io import atomic_write_text

MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
# Read by MathJax 2 before it loads: the web fonts bundled with it are STIX-Web's, not TeX's.
MATHJAX_FONTS = ('<script>window.MathJax = {"HTML-CSS": {availableFonts: [], preferredFont: null, '
                 'webFont: "STIX-Web", imageFont: null}};</script>')


def bundle_mathjax(site: Path) -> Path:
    """Copy MathJax (from the ``jupyter-server-mathjax`` package, without its translations) to ``site/mathjax``."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = site / "mathjax"
    if not (target / "MathJax.js").is_file():
        partial = site / "mathjax.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns("localization"))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def live_note(notebook: str, parameters: dict[str, Any], profile: str) -> str:
    """The banner of a page: what it is, and how to open the notebook with a live kernel for its widgets."""
    flags = " ".join(f"-p {name} {html.escape(json.dumps(value))}" for name, value in parameters.items())
    return (f'<div style="border:1px solid #bbb;background:#f6f6f6;padding:8px 12px;margin:8px;font:14px sans-serif">'
            f"A static copy of <b>{html.escape(notebook)}</b> as it ran (profile <code>{html.escape(profile)}"
            f"</code>{', parameters <code>' + flags + '</code>' if flags else ''}). Its interactive widgets need a "
            f"live kernel: from the project folder run <code>.venv/bin/jupyter lab notebooks/{html.escape(notebook)}"
            f".ipynb</code> (after <code>make reproduce</code> or <code>make test</code> has set up "
            "<code>.venv</code>) and run the notebook there.</div>")


def offline_page(body: str, note: str) -> str:
    """An exported page with the MathJax font settings before MathJax loads and ``note`` at the top of the body."""
    body = body.replace("<!-- Load mathjax -->", MATHJAX_FONTS + "\n<!-- Load mathjax -->", 1)
    return re.sub(r"(<body[^>]*>)", lambda match: match.group(1) + note, body, count=1)


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
    bundle_mathjax(site)
    exporter = HTMLExporter(mathjax_url=MATHJAX_URL)
    rows = []
    for status in collect(results_root, profile):
        notebook = Path(status["dir"]) / f"{status['notebook']}.ipynb"
        page = f"{Path(status['dir']).name}.html"
        if notebook.is_file():
            body, _ = exporter.from_filename(str(notebook))
            note = live_note(status["notebook"], status.get("parameters", {}), profile)
            atomic_write_text(site / page, offline_page(body, note))
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
