"""The HTML report's page: styles and script inline, the run's data in one JSON
element (see disttest/report/html.py). No external file, no network."""

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>disttest report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 18px}
header h1{font-size:18px;margin:0}
main{padding:12px 18px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 14px;padding:10px 14px}
h2{font-size:15px;margin:0 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{border:1px solid #dde1e7;border-radius:5px;padding:4px 10px;min-width:90px}
.card b{display:block;font-size:18px}
.bad b{color:#c62828}.good b{color:#2e7d32}
pre{background:#f3f4f6;padding:6px 8px;overflow:auto;margin:4px 0;font:12px/1.35 ui-monospace,monospace}
.tl-wrap{overflow-x:auto;border:1px solid #e3e6ea}
.tl-tools{margin:4px 0}
button{font:inherit;padding:1px 8px;cursor:pointer}
svg text{font:11px sans-serif;fill:#333}
.bar{cursor:pointer}
.bar.sel{stroke:#000;stroke-width:2}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
#tests{border-collapse:collapse;width:100%;font-size:13px}
#tests td{padding:2px 6px;border-bottom:1px solid #eef0f3}
#tests tr.test{cursor:pointer}
#tests tr.test:hover{background:#eef3fb}
#tests tr.sel{background:#dbe7fb}
.o-failed,.o-error{color:#c62828;font-weight:600}.o-passed{color:#2e7d32}
.o-skipped{color:#777}
.tests-box{max-height:320px;overflow:auto}
.logline{white-space:pre-wrap;font:12px/1.3 ui-monospace,monospace;margin:0;padding:1px 8px}
.lognode h4{margin:8px 0 2px;font-size:13px}
.muted{color:#777}
input[type=search]{padding:2px 6px;width:260px}
</style></head><body>
<header><h1>disttest report</h1><div id="sub"></div></header>
<main>
<section id="summary"><h2>Summary</h2><div class="cards" id="cards"></div>
<pre id="usage"></pre></section>
<section id="failures"><h2>Failures</h2><div id="failure-list"></div></section>
<section id="timelines"><h2>Cluster timelines</h2>
<div class="legend">
<span><i style="background:#9ccc65"></i>test passed</span>
<span><i style="background:#e53935"></i>test failed</span>
<span><i style="background:#bdbdbd"></i>other outcome</span>
<span><i style="background:#90caf9"></i>node up</span>
<span><i style="background:#424242"></i>node down</span>
<span><i style="background:#ffb74d"></i>paused</span>
<span><i style="background:#ce93d8;opacity:.6"></i>network fault</span>
<span><i style="background:#ffe082"></i>starting</span></div>
<div class="tl-tools">zoom <button id="zoom-in">+</button> <button id="zoom-out">&minus;</button>
<button id="zoom-fit">fit</button> <span class="muted">(or ctrl + wheel on a timeline)</span></div>
<div id="tl-list"></div></section>
<section id="test-section"><h2>Tests</h2>
<input type="search" id="test-filter" placeholder="filter tests">
<div class="tests-box"><table id="tests"></table></div></section>
<section id="detail"><h2>Test</h2><div id="detail-body" class="muted">Click a test (here or on a timeline) to see its node logs and faults.</div></section>
</main>
<script type="application/json" id="data">/*DATA*/null</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const el = (tag, attrs, text) => { const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text; return e; };
const NS = "http://www.w3.org/2000/svg";
const sv = (tag, attrs) => { const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
const S = D.summary, byId = {};
D.tests.forEach((t) => { byId[t.id] = t; });
let scale = 1, selected = null;

function summary() {
  $("sub").textContent = (S.successful ? "passed" : "FAILED") + " \u2014 Python " + S.python
    + " \u2014 " + D.generated;
  const cards = [["tests", S.tests_run], ["failures", S.failures, S.failures],
    ["errors", S.errors, S.errors], ["skipped", S.skipped], ["duration", S.duration_s.toFixed(2) + " s"],
    ["managing clusters", S.cluster_management_s.toFixed(2) + " s"],
    ["running tests", Math.max(0, S.duration_s - S.cluster_management_s).toFixed(2) + " s"],
    ["cluster starts", S.cluster_starts], ["reuses", S.cluster_reuses],
    ["nodes started", S.nodes_started], ["node crashes", S.node_crashes, S.node_crashes]];
  cards.forEach(([name, value, bad]) => { const c = el("div", {class: "card" + (bad ? " bad" : "")});
    c.appendChild(el("b", {}, String(value))); c.appendChild(el("span", {}, name)); $("cards").appendChild(c); });
  $("usage").textContent = D.usage || "(no cluster was used)";
  const failed = D.tests.filter((t) => t.outcome === "failed" || t.outcome === "error");
  if (!failed.length) $("failure-list").appendChild(el("p", {class: "muted"}, "none"));
  failed.forEach((t) => { const d = el("details", {class: "failure", open: ""});
    const s = el("summary"); s.appendChild(el("span", {class: "o-" + t.outcome}, t.outcome.toUpperCase() + " "));
    s.appendChild(el("span", {}, t.id + (t.cluster ? "  [cluster " + t.cluster + "]" : "")));
    d.appendChild(s);
    const show = el("button", {}, "show node logs"); show.onclick = () => select(t.id, true);
    d.appendChild(show);
    if (t.history) { d.appendChild(document.createTextNode(" "));
      d.appendChild(el("a", {href: t.history, class: "history"}, "history view")); }
    d.appendChild(el("pre", {}, t.details || t.message)); $("failure-list").appendChild(d); });
}

function spans(c) { // per node: up/down/paused bands, and markers
  const start = c.ready ?? c.start, stop = c.stop ?? D.end, nodes = {};
  const names = []; for (let i = 0; i < c.size; i++) names.push("node-" + i);
  const ev = D.node_events.filter((e) => e.cluster === c.id);
  ev.forEach((e) => { if (e.node && !names.includes(e.node)) names.push(e.node); });
  names.forEach((n) => { nodes[n] = {bands: [], marks: [], state: "up", since: start}; });
  const close = (n, t) => { const s = nodes[n]; if (s.state !== "up")
      s.bands.push([s.since, t, s.state]); s.state = "up"; s.since = t; };
  ev.forEach((e) => { const s = nodes[e.node]; if (!s) return;
    s.marks.push(e);
    if (e.kind === "kill" || e.kind === "terminate" || e.kind === "crash") {
      if (s.state !== "down") { close(e.node, e.t); s.state = "down"; s.since = e.t; } }
    else if (e.kind === "pause") { close(e.node, e.t); s.state = "paused"; s.since = e.t; }
    else if (e.kind === "resume" || e.kind === "restart" || e.kind === "replace") close(e.node, e.t); });
  names.forEach((n) => close(n, stop));
  return {names, nodes, start, stop};
}

function faultBands(c, tests) { // network faults from injection to heal or the class's end
  const ends = D.class_ends.filter((e) => e.cluster === c.id).map((e) => e.t);
  const out = []; let open = [];
  const all = []; tests.forEach((t) => (t.faults || []).forEach((f) => {
    if (NETWORK.includes(f.kind)) all.push(f); }));
  all.sort((a, b) => a.t - b.t);
  const endAt = (t) => { const e = ends.find((x) => x >= t); return e ?? (c.stop ?? D.end); };
  all.forEach((f) => { if (f.kind === "heal") { open.forEach((o) => { o.end = f.t; }); open = []; return; }
    const band = {f, start: f.t, end: endAt(f.t)}; open.push(band); out.push(band); });
  return out;
}

const NETWORK = ["partition", "isolate", "cut", "delay", "heal"];
function describeFault(f) {
  if (f.kind === "partition") return "partition " + (f.groups || []).map((g) => "[" + g.join(", ") + "]").join(" | ");
  if (f.kind === "isolate") return "isolate " + f.node;
  if (f.kind === "cut") return "cut " + f.from + (f.both_ways ? " <-> " : " -> ") + f.to;
  if (f.kind === "delay") return "delay " + f.from + " -> " + f.to + " " + f.seconds + " s";
  return f.kind + (f.node ? " " + f.node : "");
}

function timelines() {
  const list = $("tl-list"); list.textContent = "";
  const W = Math.max(600, (list.clientWidth || 1000) - 20) * scale;
  D.clusters.forEach((c) => {
    const tests = D.tests.filter((t) => t.cluster === c.id && t.start != null);
    const sp = spans(c), t0 = c.start, t1 = Math.max(sp.stop, ...tests.map((t) => t.end ?? t.start));
    const px = (t) => 110 + (t - t0) / Math.max(t1 - t0, 1e-6) * (W - 120);
    const rows = sp.names.length + 2, H = 22 * rows + 24;
    const svg = sv("svg", {width: W, height: H, class: "timeline", "data-cluster": c.id});
    const head = el("h3", {style: "font-size:13px;margin:10px 0 2px"},
      "cluster " + c.id + " \u2014 " + c.size + " node(s), " + (c.network || "direct")
      + (c.simulated ? ", simulated" : "") + (c.kept ? ", kept" : ""));
    // axis
    const ticks = 8;
    for (let i = 0; i <= ticks; i++) { const t = t0 + (t1 - t0) * i / ticks, x = px(t);
      svg.appendChild(sv("line", {x1: x, x2: x, y1: 14, y2: H, stroke: "#eee"}));
      const lab = sv("text", {x: x + 2, y: 11}); lab.textContent = t.toFixed(2) + "s"; svg.appendChild(lab); }
    const rowY = (i) => 18 + 22 * i;
    const label = (i, text) => { const l = sv("text", {x: 4, y: rowY(i) + 14}); l.textContent = text; svg.appendChild(l); };
    label(0, "tests");
    tests.forEach((t) => { const x = px(t.start), w = Math.max(2, px(t.end ?? t.start) - x);
      const bad = t.outcome === "failed" || t.outcome === "error";
      const r = sv("rect", {x, y: rowY(0) + 2, width: w, height: 16, class: "bar",
        "data-test": t.id, stroke: "#fff", fill: bad ? "#e53935" : t.outcome === "passed" ? "#9ccc65" : "#bdbdbd"});
      const tip = sv("title", {}); tip.textContent = t.id + " (" + t.outcome + ", " + t.duration + " s)";
      r.appendChild(tip); r.onclick = () => select(t.id, false); svg.appendChild(r);
      if (bad) { const m = sv("text", {x: x + w / 2 - 3, y: rowY(0) - 1, fill: "#c62828"}); m.textContent = "\u2716"; svg.appendChild(m); } });
    label(1, "network");
    faultBands(c, tests).forEach((b) => { const r = sv("rect", {x: px(b.start), y: rowY(1) + 2,
      width: Math.max(2, px(b.end) - px(b.start)), height: 16, fill: "#ce93d8", opacity: .6, class: "fault"});
      const tip = sv("title", {}); tip.textContent = describeFault(b.f) + " at " + b.start + " s"; r.appendChild(tip); svg.appendChild(r); });
    sp.names.forEach((n, i) => { const s = sp.nodes[n], y = rowY(i + 2) + 4; label(i + 2, n);
      if (c.ready != null && c.ready > c.start) svg.appendChild(sv("rect", {x: px(c.start), y, width: px(c.ready) - px(c.start), height: 12, fill: "#ffe082"}));
      svg.appendChild(sv("rect", {x: px(sp.start), y, width: Math.max(1, px(sp.stop) - px(sp.start)), height: 12, fill: "#90caf9", class: "node-life"}));
      s.bands.forEach(([a, b, st]) => { const r = sv("rect", {x: px(a), y, width: Math.max(2, px(b) - px(a)), height: 12,
        fill: st === "down" ? "#424242" : "#ffb74d", class: "node-" + st});
        const tip = sv("title", {}); tip.textContent = n + " " + st + " " + a + "-" + b + " s"; r.appendChild(tip); svg.appendChild(r); });
      s.marks.forEach((m) => { const tx = sv("text", {x: px(m.t) - 3, y: y + 10, fill: "#b71c1c"});
        tx.textContent = {kill: "\u2620", terminate: "\u2620", crash: "\u2716", restart: "\u21bb", pause: "\u2016", resume: "\u25b6", replace: "\u21c4"}[m.kind] || "\u2022";
        const tip = sv("title", {}); tip.textContent = n + " " + m.kind + " at " + m.t + " s"; tx.appendChild(tip); svg.appendChild(tx); }); });
    const wrap = el("div", {class: "tl-wrap"}); wrap.appendChild(svg);
    wrap.addEventListener("wheel", (ev) => { if (!ev.ctrlKey) return; ev.preventDefault();
      zoom(ev.deltaY < 0 ? 1.5 : 1 / 1.5); }, {passive: false});
    list.appendChild(head); list.appendChild(wrap); });
  if (!D.clusters.length) list.appendChild(el("p", {class: "muted"}, "no cluster ran"));
  if (selected) mark(selected);
}

function zoom(f) { scale = f ? Math.min(64, Math.max(1, scale * f)) : 1; timelines(); }

function testTable() {
  const table = $("tests"), q = $("test-filter").value.toLowerCase(); table.textContent = "";
  let shown = 0;
  for (const t of D.tests) { if (q && !(t.id + " " + t.outcome).toLowerCase().includes(q)) continue;
    if (++shown > 3000) break;
    const tr = el("tr", {class: "test" + (t.id === selected ? " sel" : ""), "data-id": t.id});
    tr.appendChild(el("td", {class: "o-" + t.outcome}, t.outcome));
    tr.appendChild(el("td", {}, t.id)); tr.appendChild(el("td", {}, t.cluster || ""));
    tr.appendChild(el("td", {}, t.duration.toFixed(3) + " s")); tr.onclick = () => select(t.id, false);
    table.appendChild(tr); }
}

function mark(id) {
  document.querySelectorAll(".bar.sel, #tests tr.sel").forEach((e) => e.classList.remove("sel"));
  document.querySelectorAll(".bar").forEach((e) => { if (e.getAttribute("data-test") === id) e.classList.add("sel"); });
  document.querySelectorAll("#tests tr.test").forEach((e) => { if (e.getAttribute("data-id") === id) e.classList.add("sel"); });
}

function select(id, scroll) {
  selected = id; mark(id); const t = byId[id], body = $("detail-body");
  body.className = ""; body.textContent = "";
  const p = body.appendChild(el("p")); p.appendChild(el("b", {id: "detail-id"}, t.id)); p.appendChild(document.createTextNode(
    " \u2014 " + t.outcome + ", " + t.duration + " s" + (t.cluster ? ", cluster " + t.cluster : "")
    + (t.start != null ? ", from " + t.start + " s to " + t.end + " s" : "")));
  if (t.details) body.appendChild(el("pre", {}, t.details));
  if (t.history) body.appendChild(el("a", {href: t.history}, "history view"));
  body.appendChild(el("h4", {}, "Faults injected"));
  const faults = (t.faults || []).map((f) => f.t + " s  " + describeFault(f));
  // What the test did to nodes is in its faults; what happened to them besides, here.
  D.node_events.filter((e) => e.cluster === t.cluster && ["crash", "resume", "replace"].includes(e.kind)
    && e.t >= t.start && e.t <= t.end)
    .forEach((e) => faults.push(e.t + " s  " + e.kind + " " + e.node));
  body.appendChild(faults.length ? el("pre", {id: "faults"}, faults.join("\n")) : el("p", {class: "muted"}, "none"));
  body.appendChild(el("h4", {}, "Node logs during the test"));
  const names = Object.keys(t.logs || {});
  if (!names.length) { body.appendChild(el("p", {class: "muted", id: "no-logs"}, "no node log lines in this test's window")); }
  else {
    const tools = el("div"); const pick = el("select", {id: "log-node"});
    pick.appendChild(el("option", {value: ""}, "all nodes"));
    names.forEach((n) => pick.appendChild(el("option", {value: n}, n)));
    const q = el("input", {type: "search", id: "log-filter", placeholder: "filter log lines"});
    tools.appendChild(pick); tools.appendChild(document.createTextNode(" ")); tools.appendChild(q);
    body.appendChild(tools); const out = el("div", {id: "logs"}); body.appendChild(out);
    const draw = () => { out.textContent = ""; const text = q.value.toLowerCase();
      names.forEach((n) => { if (pick.value && pick.value !== n) return; const box = el("div", {class: "lognode", "data-node": n});
        box.appendChild(el("h4", {}, n + (t.logs[n].cut ? " (earlier lines left out)" : "")));
        const lines = t.logs[n].lines.filter((l) => !text || l.toLowerCase().includes(text));
        lines.forEach((l) => box.appendChild(el("pre", {class: "logline"}, l)));
        if (!lines.length) box.appendChild(el("p", {class: "muted"}, "(no line)"));
        out.appendChild(box); }); };
    pick.onchange = draw; q.oninput = draw; draw(); }
  if (scroll) $("detail").scrollIntoView();
}

$("zoom-in").onclick = () => zoom(2); $("zoom-out").onclick = () => zoom(0.5);
$("zoom-fit").onclick = () => zoom(0); $("test-filter").oninput = testTable;
summary(); timelines(); testTable();
document.body.setAttribute("data-ready", "1");
</script></body></html>
"""
