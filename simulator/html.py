"""HTML building blocks for geoledger's pages: escaping, number formats, tables, figures,
and the self-contained page shell (inline styles, a Content-Security-Policy that forbids
every external load and every script), shared by every report."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'"
"""Nothing loads from anywhere, nothing runs: the page shows the same offline as online."""
NOT_RECORDED = "not recorded by this run"


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt_num(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4f}".rstrip("0").rstrip(".") if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def fmt_ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.2f}" if x < 10 else (f"{x:.1f}" if x < 100 else f"{x:,.0f}")


def money(amount: int | None) -> str:
    """Minor units (fen) as yuan: the workload's ledger 156 is CNY."""
    return "an unknown amount" if amount is None else f"¥{amount / 100:,.2f}"


def fmt_pct(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 100:.3f}".rstrip("0").rstrip(".") + "%"


def le(x: Any, unit: str) -> str:
    return "no target" if x is None else f"≤ {fmt_num(x)} {unit}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", raw: bool = False,
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table. Cells are escaped unless ``raw`` (the caller escaped them already)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{rc}>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure(plot_id: str, title: str, caption: str, svg: str | None, missing: str = "") -> str:
    """A plot slot: the SVG, or a placeholder saying why the run has no such series."""
    body = svg if svg is not None else f'<div class="placeholder"><b>{esc(NOT_RECORDED)}.</b> {esc(missing)}</div>'
    state = "svg" if svg is not None else "missing"
    return (f'<figure class="plot" id="plot-{plot_id}" data-plot="{plot_id}" data-state="{state}">'
            f"<figcaption><b>{esc(title)}</b> — {esc(caption)}</figcaption>{body}</figure>")


def page(title: str, body: str) -> str:
    """The HTML document shell: inline CSS, a CSP that forbids every external load and script."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="geoledger report">
<title>{esc(title)}</title>
<style>{CSS}</style></head>
<body><main>
{body}
</main></body></html>
"""


CSS = """
:root { --ok:#1b7f3b; --okbg:#e6f4ea; --bad:#b3261e; --badbg:#fce8e6; --warn:#8a5a00; --warnbg:#fef7e0;
        --mute:#5f6368; --line:#dadce0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",
       "PingFang SC","Microsoft YaHei",sans-serif; color:#202124;
       background:#fafafa; }
main { max-width:1200px; margin:0 auto; padding:20px 24px 48px; background:#fff; }
h1 { font-size:22px; margin:0 0 4px; } h2 { font-size:17px; margin:28px 0 8px; border-bottom:1px solid var(--line);
     padding-bottom:4px; } h3 { font-size:15px; margin:16px 0 6px; }
.sub { color:var(--mute); margin:0 0 12px; }
.banner { border-radius:8px; padding:14px 18px; margin:12px 0 16px; font-size:17px; font-weight:600; }
.banner small { display:block; font-weight:400; font-size:13px; margin-top:4px; }
.banner.pass { background:var(--okbg); color:var(--ok); border:1px solid #a8dab5; }
.banner.warn { background:var(--warnbg); color:var(--warn); border:1px solid #f5d78e; }
.banner.fail { background:var(--badbg); color:var(--bad); border:1px solid #f4b4ae; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:0; }
dl.facts dt { color:var(--mute); } dl.facts dd { margin:0; }
code, pre { font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
code.cmd { background:#f1f3f4; padding:2px 6px; border-radius:4px; user-select:all; }
pre { background:#f8f9fa; border:1px solid var(--line); border-radius:4px; padding:6px 8px; margin:0;
      white-space:pre-wrap; word-break:break-word; max-height:260px; overflow:auto; }
table { border-collapse:collapse; margin:6px 0 10px; width:100%; }
th, td { border-bottom:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
th { background:#f1f3f4; font-weight:600; white-space:nowrap; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
.ok { color:var(--ok); font-weight:600; } .bad { color:var(--bad); font-weight:600; }
.warn { color:var(--warn); font-weight:600; } .na { color:var(--mute); }
tr.total td { font-weight:600; border-top:2px solid #bbb; }
figure.plot { margin:12px 0 18px; } figure.plot figcaption { margin-bottom:4px; }
figure.plot svg { width:100%; height:auto; display:block; }
.placeholder { border:2px dashed var(--line); border-radius:8px; padding:22px; color:var(--mute);
               background:#fcfcfc; }
.note { color:var(--mute); font-size:13px; } ul.summary li { margin:4px 0; }
table.decision th, table.promises th, table.sweep-matrix th { white-space:normal; }
table.decision td, table.promises td, table.sweep-matrix td { font-size:13px; }
.plots-grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(520px, 1fr)); gap:0 18px; }
details { margin-top:8px; } summary { cursor:pointer; color:var(--mute); }
"""


def status_badge(ok: bool | None, yes: str = "met", no: str = "MISSED") -> str:
    if ok is None:
        return '<span class="na">n/a</span>'
    return f'<span class="ok">{yes}</span>' if ok else f'<span class="bad">{no}</span>'


def pre_json(x: Any, limit: int = 2000) -> str:
    text = json.dumps(x, indent=1, sort_keys=True, default=str)
    if len(text) > limit:
        text = text[:limit] + "\n…"
    return f"<pre>{esc(text)}</pre>"
