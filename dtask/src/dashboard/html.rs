//! The pieces every dashboard page is made of: escaping, the page frame with its style and
//! script, and small widgets (numbers, times, the throughput chart).

use std::fmt::Write;
use std::time::SystemTime;

use crate::Throughput;

/// `text` escaped for HTML text and attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` for a path segment of a link (queue names and ids may hold anything).
pub(super) fn seg(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `time` as `YYYY-MM-DD HH:MM:SS UTC`, in a `<time>` the script shows in the reader's zone.
pub(super) fn time(time: SystemTime) -> String {
    let ms = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "<time data-ms=\"{ms}\">{}</time>",
        crate::clock::utc_text(time)
    )
}

/// The throughput chart of the last hour: one bar per minute, succeeded above failed.
pub(super) fn chart(throughput: &Throughput) -> String {
    let max = throughput
        .per_minute
        .iter()
        .map(|(_, c)| c.succeeded + c.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::from(
        "<svg class=\"chart\" viewBox=\"0 0 600 120\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"jobs per minute, last hour\">",
    );
    for (i, (_, counts)) in throughput.per_minute.iter().enumerate() {
        let x = i * 10;
        let ok = counts.succeeded as f64 / max as f64 * 116.0;
        let failed = counts.failed as f64 / max as f64 * 116.0;
        let _ = write!(
            svg,
            "<rect class=\"ok\" x=\"{x}\" y=\"{:.1}\" width=\"8\" height=\"{ok:.1}\"><title>{} succeeded</title></rect>",
            120.0 - ok,
            counts.succeeded
        );
        if counts.failed > 0 {
            let _ = write!(
                svg,
                "<rect class=\"failed\" x=\"{x}\" y=\"{:.1}\" width=\"8\" height=\"{failed:.1}\"><title>{} failed</title></rect>",
                120.0 - ok - failed,
                counts.failed
            );
        }
    }
    svg.push_str("</svg>");
    let _ = write!(
        svg,
        "<div class=\"axis\"><span>60 min ago</span><span>highest: {max} jobs/min</span><span>now</span></div>"
    );
    svg
}

/// A whole page: `title`, the navigation trail, an optional notice, and `body`.
pub(super) fn page(
    base: &str,
    title: &str,
    trail: &str,
    notice: Option<&str>,
    body: &str,
) -> String {
    let notice = notice
        .map(|text| format!("<p class=\"notice\" role=\"status\">{}</p>", esc(text)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · dtask</title><style>{STYLE}</style></head>\
<body data-base=\"{base}\"><header><a class=\"brand\" href=\"{home}\">dtask</a><nav>{trail}</nav></header>\
<main>{notice}{body}</main><script>{SCRIPT}</script></body></html>",
        title = esc(title),
        base = esc(base),
        home = if base.is_empty() {
            "/".to_owned()
        } else {
            esc(base)
        },
    )
}

/// The dashboard's style: system fonts, light and dark, readable on a phone.
const STYLE: &str = r#"
:root{--bg:#f7f7f8;--card:#fff;--fg:#1c1d21;--muted:#6b6f7a;--line:#e3e4e8;--accent:#3b5bdb;--ok:#2f9e44;--bad:#e03131;--warn:#f08c00}
@media (prefers-color-scheme:dark){:root{--bg:#141518;--card:#1d1f24;--fg:#e9eaee;--muted:#9a9eab;--line:#2e3139;--accent:#7b93ff;--ok:#51cf66;--bad:#ff6b6b;--warn:#ffa94d}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;gap:1rem;align-items:center;padding:.8rem 1.2rem;background:var(--card);border-bottom:1px solid var(--line)}
.brand{font-weight:700;font-size:1.1rem;color:var(--accent);text-decoration:none}nav{color:var(--muted)}nav a{color:inherit}
main{max-width:1100px;margin:0 auto;padding:1.2rem}h1{font-size:1.35rem;margin:.2rem 0 1rem}h2{font-size:1.05rem;margin:1.4rem 0 .6rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1rem;margin-bottom:1rem;overflow-x:auto}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-size:.78rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.err{white-space:normal;max-width:28rem;color:var(--bad)}tr:last-child td{border-bottom:0}a{color:var(--accent)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.8rem;margin-bottom:1rem}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.8rem 1rem}.tile b{display:block;font-size:1.6rem;font-variant-numeric:tabular-nums}.tile span{color:var(--muted);font-size:.85rem}
.tabs{display:flex;flex-wrap:wrap;gap:.4rem;margin-bottom:.8rem}.tabs a{padding:.35rem .8rem;border-radius:999px;border:1px solid var(--line);text-decoration:none;color:var(--fg);background:var(--card)}
.tabs a.on{background:var(--accent);border-color:var(--accent);color:#fff}.tabs a span{opacity:.75;margin-left:.3rem}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.6rem 0}form{display:inline}
button{font:inherit;padding:.4rem .9rem;border-radius:8px;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}button.danger{color:var(--bad);border-color:var(--bad)}
input[type=search]{font:inherit;padding:.4rem .7rem;border-radius:8px;border:1px solid var(--line);background:var(--card);color:var(--fg);min-width:16rem}
.badge{display:inline-block;padding:.05rem .55rem;border-radius:999px;font-size:.78rem;border:1px solid currentColor}.badge.paused{color:var(--warn)}.badge.dead{color:var(--bad)}.badge.live{color:var(--ok)}
.notice{background:var(--card);border-left:4px solid var(--ok);padding:.6rem .9rem;border-radius:6px}
.muted{color:var(--muted)}pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);padding:.7rem;border-radius:8px;margin:0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0}dt{color:var(--muted)}dd{margin:0;word-break:break-word}
.err{color:var(--bad)}body[data-stale] [data-k]{opacity:.45}.axis{display:flex;justify-content:space-between;color:var(--muted);font-size:.8rem;margin-top:.3rem}
.chart{width:100%;height:120px}.chart .ok{fill:var(--ok)}.chart .failed{fill:var(--bad)}
.pager{display:flex;gap:1rem;margin-top:.6rem}
@media (max-width:600px){main{padding:.7rem}th,td{padding:.4rem}.hide-s{display:none}}
"#;

/// The dashboard's script: live counts (every 2 s, from `api/stats`), local times, and
/// confirmation of destructive actions. No framework, no build step.
const SCRIPT: &str = r#"
(function(){
const base=document.body.dataset.base;
document.querySelectorAll('time[data-ms]').forEach(t=>{t.title=t.textContent;t.textContent=new Date(+t.dataset.ms).toLocaleString();});
document.querySelectorAll('form[data-confirm]').forEach(f=>f.addEventListener('submit',e=>{if(!confirm(f.dataset.confirm))e.preventDefault();}));
const cells=document.querySelectorAll('[data-q][data-k]');
if(!cells.length)return;
async function refresh(){
  try{
    if(document.hidden)return;
    const r=await fetch(base+'/api/stats',{headers:{'accept':'application/json'}});
    if(!r.ok){document.body.dataset.stale='1';return;}
    const s=await r.json();
    delete document.body.dataset.stale;
    cells.forEach(c=>{const q=c.dataset.q,k=c.dataset.k;const row=s.queues.find(x=>x.queue===q);if(!row||!(k in row))return;if(typeof row[k]==='boolean'){c.innerHTML=row[k]?'<span class="badge paused">paused</span>':'';}else{c.textContent=row[k];}});
    document.body.dataset.refreshed=String(Date.now());
  }catch(e){document.body.dataset.stale='1';}
}
// The next refresh is asked for only once the last one is answered: a slow Redis gets no pile.
(function loop(){setTimeout(async()=>{await refresh();loop();},2000);})();
})();
"#;
