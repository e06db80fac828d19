"""``results/report.html``: one self-contained page with every experiment's figures and fidelity table."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ldjax._src.experiments import claims
from ldjax._src.experiments import registry
from ldjax._src.experiments import storage

_CSS = """
:root { --fg:#1d2430; --muted:#5b6575; --ok:#17753a; --bad:#b3261e; --line:#dde2ea; --bg:#f7f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
       background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 0 0 6px; }
.lead { color: var(--muted); margin: 0 0 18px; }
code, .formula { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13.5px; }
.formula { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
           display: inline-block; margin: 4px 0 12px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px;
          margin: 18px 0; overflow: hidden; }
table { border-collapse: collapse; width: 100%; margin: 10px 0; table-layout: auto; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td.ok, td.bad, td:first-child a { white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 13px; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.skipped { color: var(--muted); }
figure { margin: 12px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line);
         border-radius: 6px; display: block; }
figcaption { color: var(--muted); font-size: 13px; }
.meta { color: var(--muted); font-size: 13px; }
details pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; background: var(--bg);
              padding: 8px; border-radius: 6px; }
nav a { margin-right: 14px; }
h3 { font-size: 16px; margin: 14px 0 4px; }
"""


def _status_cell(holds: bool) -> str:
    return '<td class="ok">holds</td>' if holds else '<td class="bad">missed</td>'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "—"
    return html.escape(str(value))


def _value_cell(row: dict[str, Any]) -> str:
    value = _fmt(row.get("value"))
    spread = row.get("spread")
    if isinstance(spread, int | float):
        value += f" ± {spread:.2g}"
    seeds = row.get("seeds", 1)
    if row.get("kind") == "claim":
        value += f" <span class='meta'>({seeds} seed{'s' if seeds != 1 else ''})</span>"
    return f"<td>{value}</td>"


def _rows_table(rows: list[dict[str, Any]], kind: str, *, with_experiment: bool = False) -> str:
    """One table of claims (statement, paper, criterion, value ± spread, verdict) or checks."""
    esc = html.escape
    picked = [row for row in rows if row["kind"] == kind]
    if not picked:
        return ""
    head = "<tr>" + ("<th>experiment</th>" if with_experiment else "") + "<th>id</th><th>statement</th>"
    head += "<th>paper</th>" if kind == "claim" else ""
    head += (
        "<th>criterion</th><th>this run</th><th></th>"
        + ("" if with_experiment else "<th>note</th>")
        + "</tr>"
    )
    body = []
    for row in picked:
        cells = ""
        if with_experiment:
            cells += f"<td><a href='#{esc(row['experiment'])}'>{esc(row['experiment'])}</a></td>"
        cells += f"<td><code>{esc(str(row.get('id', '')))}</code></td><td>{esc(str(row['statement']))}"
        if row.get("source"):
            cells += f"<br><span class='meta'>{esc(str(row['source']))}</span>"
        cells += "</td>"
        if kind == "claim":
            cells += f"<td>{esc(str(row.get('paper', '')))}</td>"
        cells += f"<td>{esc(str(row.get('criterion', '')))}</td>{_value_cell(row)}"
        cells += _status_cell(bool(row["holds"]))
        if not with_experiment:
            cells += f"<td>{esc(str(row.get('note', '')))}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def figure_path(folder: Path, name: Any) -> Path | None:
    """``folder/name`` when ``name`` is a plain ``.png`` file name inside ``folder``, else ``None``.

    ``results.json`` may come from elsewhere (a shared folder): a name with a path separator, ``..``, a
    leading dot, or a link that leads out of the folder is never read into the page.

    Example:
      >>> from pathlib import Path
      >>> from ldjax._src.app.report import figure_path
      >>> figure_path(Path("results/demo"), "../../../../etc/hostname") is None
      True
    """
    if not isinstance(name, str) or not name.endswith(".png") or name.startswith("."):
        return None
    if "/" in name or "\\" in name or "\x00" in name or Path(name).name != name:
        return None
    path = folder / name
    try:
        if not path.is_file() or path.resolve().parent != folder.resolve():
            return None
    except OSError:
        return None
    return path


def _section(spec: registry.ExperimentSpec, out: Path, status: dict[str, Any]) -> tuple[str, list[dict]]:
    folder = out / spec.name
    path = folder / storage.RESULTS_FILE
    esc = html.escape
    head = f'<section id="{spec.name}"><h2>{esc(spec.name)} — {esc(spec.description)}</h2>'
    record, why = storage.read_json(path)
    if not isinstance(record, dict):
        entry = status.get(spec.name, {})
        state, reason = entry.get("state", "not run"), entry.get("reason") or ""
        if why != "absent":
            state, reason = "unreadable", why or f"{path} is not a JSON object"
        reason = reason or "run `ldjax reproduce " + spec.name + "`"
        body = f'<p class="skipped">{esc(str(state))}: {esc(str(reason))}</p><p class="meta">data: {esc(spec.data)}</p>'
        return head + body + "</section>", []
    try:
        return _record_section(spec, folder, record, head)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        body = (
            f'<p class="skipped">unreadable: {esc(str(path))} is malformed ({esc(type(err).__name__)}: '
            f"{esc(str(err))}); rerun `ldjax reproduce {esc(spec.name)} --force`</p>"
        )
        return head + body + "</section>", []


def _record_section(
    spec: registry.ExperimentSpec, folder: Path, record: dict[str, Any], head: str
) -> tuple[str, list[dict]]:
    esc = html.escape
    env = record.get("environment", {})
    rows = [claims.normalise(row) for row in record.get("fidelity", [])]
    parts = [head]
    parts.append(
        f'<p class="meta"><b>Data set used:</b> {esc(str(record.get("dataset")))}<br>'
        f"<b>Run time:</b> {record.get('wall_seconds', 0):.1f} s on {esc(str(env.get('device')))} "
        f"({esc(str(env.get('backend')))}, {env.get('cpu_count')} CPUs) · jax {esc(str(env.get('jax')))} · "
        f"ldjax {esc(str(env.get('ldjax')))} · {esc(str(env.get('date')))}</p>"
    )
    for kind, title in (
        ("claim", "Claims of the papers"),
        ("check", "Checks (identities and numerical self-tests)"),
    ):
        table = _rows_table(rows, kind)
        if table:
            parts.append(f"<h3>{title}</h3>{table}")
    for name in record.get("figures", []):
        image = figure_path(folder, name)
        if image is None:
            parts.append(
                f'<p class="skipped">figure {esc(repr(name))} not shown: not a .png file of this folder</p>'
            )
            continue
        data = base64.b64encode(image.read_bytes()).decode()
        parts.append(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(name)} (PDF beside it in {esc(str(folder))})</figcaption></figure>"
        )
    config = json.dumps(record.get("config", {}), indent=1)
    parts.append(f"<details><summary>settings</summary><pre>{esc(config)}</pre></details></section>")
    return "".join(parts), [dict(row, experiment=spec.name) for row in rows]


def build(out: str | Path = "results") -> Path:
    """Write ``<out>/report.html`` from the finished experiments in ``out`` and return its path.

    Example:
      >>> from ldjax._src.app import report
      >>> report.build("results")  # doctest: +SKIP
    """
    out = Path(out)
    status = storage.read_status(out)
    sections, all_rows = [], []
    for spec in registry.EXPERIMENTS:
        section, rows = _section(spec, out, status)
        sections.append(section)
        all_rows.extend(rows)
    claims_ = [row for row in all_rows if row["kind"] == "claim"]
    checks_ = [row for row in all_rows if row["kind"] == "check"]
    held = sum(bool(row["holds"]) for row in claims_)
    passed = sum(bool(row["holds"]) for row in checks_)
    summary = [
        f"<section id='fidelity'><h2>Claims: {held} of {len(claims_)} findings of the papers hold</h2>",
        "<p class='meta'>A claim is a paper's finding, decided over several seeds by a criterion fixed in code "
        "with a margin; a missed claim stays missed, and its note says why. Checks (identities, "
        f"predicted-vs-actual agreement) prove the code, not the phenomenon: {passed} of {len(checks_)} pass, "
        "listed apart below.</p>",
        _rows_table(all_rows, "claim", with_experiment=True),
        f"<h3>Checks: {passed} of {len(checks_)} pass</h3>",
        _rows_table(all_rows, "check", with_experiment=True),
        "</section>",
    ]
    nav = "".join(f'<a href="#{spec.name}">{spec.name}</a>' for spec in registry.EXPERIMENTS)
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>ldjax report</title><style>{_CSS}</style></head><body><main>"
        "<h1>ldjax — learning dynamics, reproduced</h1>"
        "<p class='lead'>One update on x_u moves log π on every x_o:</p>"
        "<div class='formula'>Δ log π(y | x_o) = −η · A(x_o) · K(x_o, x_u) · G(x_u, y_u) + O(η²)</div>"
        f"<nav>{nav}</nav>" + "".join(summary) + "".join(sections) + "</main></body></html>"
    )
    return storage.write_atomic(out / "report.html", page.encode())
