"""The report page: one HTML string with inline CSS and JS (no network, no external files).

Static sections (tables, SVG charts, PNG plots) are rendered in Python; the per-trace token view is rendered
by the script below from the JSON in ``<script id="trace-data">``, one trace at a time. Any script error is
written into ``#js-errors`` (and ``body[data-js-error]``) so a headless browser test can see it.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

CSS = r"""
:root { --fg:#1d2330; --muted:#5c6577; --line:#dde1e8; --bg:#f6f7f9; --card:#fff; --accent:#3b5bdb;
        --ok:#2b8a3e; --bad:#c92a2a; --peak:#1c3fd1; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
header.top { background:#1d2330; color:#fff; padding:12px 24px; position:sticky; top:0; z-index:5;
             display:flex; gap:24px; align-items:baseline; flex-wrap:wrap; }
header.top h1 { font-size:18px; margin:0; font-weight:600; }
header.top nav a { color:#c5d0ff; margin-right:14px; text-decoration:none; font-size:13px; }
header.top nav a:hover { text-decoration:underline; }
header.top .meta { color:#aab3c5; font-size:12px; margin-left:auto; }
main { max-width:1280px; margin:0 auto; padding:16px 24px 48px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 18px;
          margin:16px 0; }
section > h2 { font-size:17px; margin:0 0 4px; }
section p.help { color:var(--muted); margin:2px 0 10px; font-size:13px; }
h3 { font-size:14px; margin:14px 0 6px; }
table.data { border-collapse:collapse; font-size:13px; margin:6px 0 10px; }
table.data th, table.data td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left;
                               vertical-align:top; }
table.data th { background:#f0f2f6; font-weight:600; white-space:nowrap; }
table.data td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.ok { color:var(--ok); font-weight:600; } .bad { color:var(--bad); font-weight:600; } .na { color:var(--muted); }
.charts { display:flex; flex-wrap:wrap; gap:14px; align-items:flex-start; }
.charts figure { margin:0; }
.charts img { max-width:100%; max-height:380px; border:1px solid var(--line); border-radius:4px; background:#fff; }
.charts figure.wide { flex-basis:100%; width:100%; }
.charts figure.wide img { max-height:none; width:100%; max-width:1100px; }
.chart-box { display:inline-flex; flex-direction:column; align-items:flex-end; }
a.download { font-size:11px; color:var(--muted); margin-left:6px; }
.scroll { overflow-x:auto; max-width:100%; }
figure figcaption { font-size:12px; color:var(--muted); max-width:560px; }
svg.chart { background:#fff; border:1px solid var(--line); border-radius:4px; font-size:11px; max-width:100%;
            height:auto; }
svg.chart .grid { stroke:#eceef2; } svg.chart .frame { fill:none; stroke:#b8bfcc; }
svg.chart .axis { stroke:#8a93a3; } svg.chart .title { font-size:13px; font-weight:600; }
svg.chart text { fill:#38404f; } svg.chart .legend { font-size:11px; }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12.5px; }
.notice { background:#fff8e6; border:1px solid #f1d48a; border-radius:6px; padding:6px 10px; font-size:13px; }
#js-errors { background:#ffe3e3; border:1px solid #e03131; color:#a51111; padding:8px 12px; margin:12px 24px; }
/* trace view */
.tv { display:grid; grid-template-columns:minmax(250px,310px) 1fr; gap:16px; }
.tv-list { border-right:1px solid var(--line); padding-right:12px; min-width:0; }
.tv-list .controls { display:flex; gap:6px; flex-wrap:wrap; margin-bottom:6px; }
.tv-list input, .tv-list select, .tv-head select { font:inherit; font-size:13px; padding:2px 6px; }
.tv-list input { flex:1; min-width:90px; }
.tv-list label { display:block; width:100%; } .tv-run { width:100%; max-width:100%; }
.tv-list table { width:100%; }
.tv-list tbody tr { cursor:pointer; }
.tv-list tbody tr:hover { background:#eef2ff; }
.tv-list tbody tr.sel { background:#dbe4ff; }
.pager { display:flex; gap:6px; align-items:center; font-size:12px; color:var(--muted); }
.pager button { font:inherit; font-size:12px; padding:1px 8px; cursor:pointer; }
.tv-main { min-width:0; }
.tv-head { display:flex; gap:14px; align-items:baseline; flex-wrap:wrap; margin-bottom:6px; }
.tv-head .title { font-weight:600; font-size:15px; }
.legend-bar { display:inline-flex; align-items:center; gap:6px; font-size:12px; color:var(--muted); }
.legend-bar .ramp { width:120px; height:10px; border-radius:2px; border:1px solid var(--line); }
.legend-bar .peak-swatch { display:inline-block; width:16px; height:12px; outline:2px solid var(--peak);
                           outline-offset:-1px; border-radius:2px; }
svg.spark { width:100%; height:70px; display:block; background:#fbfbfd; border:1px solid var(--line);
            border-radius:4px; margin:4px 0 8px; }
.tokens { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; line-height:1.9;
          white-space:pre-wrap; word-break:break-word; border:1px solid var(--line); border-radius:4px;
          padding:8px 10px; max-height:62vh; overflow:auto; background:#fff; }
.tokens .tok { border-radius:2px; padding:1px 0; }
.tokens .tok:hover { outline:1px solid #333; }
.tokens .tok.peak { outline:2px solid var(--peak); outline-offset:-1px; font-weight:600; }
.tokens .tok.hl { box-shadow:0 0 0 3px #ffd43b; }
.tokens .plain { color:var(--fg); }
details.prompt { margin:8px 0; font-size:13px; }
details.prompt pre { white-space:pre-wrap; background:#f6f7f9; padding:8px; border-radius:4px; max-height:240px;
                     overflow:auto; }
#tooltip { position:fixed; pointer-events:none; background:#1d2330; color:#fff; font-size:12px; padding:5px 8px;
           border-radius:4px; z-index:20; display:none; white-space:pre; font-family:ui-monospace,Menlo,monospace; }
@media (max-width: 900px) { .tv { grid-template-columns:1fr; } .tv-list { border-right:0; padding-right:0; } }
"""

SCRIPT = r"""
(function () {
  'use strict';
  function reportError(text) {
    var box = document.getElementById('js-errors');
    if (!box) { return; }
    box.hidden = false;
    var line = document.createElement('div');
    line.className = 'js-error';
    line.textContent = text;
    box.appendChild(line);
    document.body.setAttribute('data-js-error', '1');
  }
  window.addEventListener('error', function (e) { reportError('Uncaught ' + (e.message || e)); });
  window.addEventListener('unhandledrejection', function (e) { reportError('Unhandled rejection: ' + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    reportError('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return consoleError.apply(console, arguments);
  };

  var RAMP = [[255, 255, 229], [255, 237, 160], [254, 196, 79], [248, 131, 36], [217, 72, 1], [140, 45, 4]];
  var PAGE = 25;

  function ramp(v) {
    if (!(v >= 0)) { v = 0; } if (v > 1) { v = 1; }
    var x = v * (RAMP.length - 1), i = Math.min(Math.floor(x), RAMP.length - 2), f = x - i;
    var a = RAMP[i], b = RAMP[i + 1];
    return 'rgb(' + Math.round(a[0] + (b[0] - a[0]) * f) + ',' + Math.round(a[1] + (b[1] - a[1]) * f) + ',' +
      Math.round(a[2] + (b[2] - a[2]) * f) + ')';
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) { return 'n/a'; }
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e4)) ? v.toExponential(3) : v.toPrecision(4);
  }
  function show(text) { return JSON.stringify(text); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function correctness(t) {
    if (t.ok === true) { return ['\u2713', 'ok']; }
    if (t.ok === false) { return ['\u2717', 'bad']; }
    return [t.st || '?', 'na'];
  }

  function TraceView(root, runs) {
    this.root = root; this.runs = runs; this.run = 0; this.page = 0; this.pos = 0; this.filter = '';
    this.which = 'all'; this.scale = 'trace'; this.layer = null; this.runRange = {};
    this.build();
    this.selectRun(0);
  }
  TraceView.prototype.build = function () {
    var self = this, root = this.root;
    this.runSelect = root.querySelector('.tv-run');
    this.runs.forEach(function (r, i) {
      var o = el('option', null, r.run + ' \u2014 ' + r.model + ' (' + r.traces.length + ' traces)');
      o.value = String(i); self.runSelect.appendChild(o);
    });
    if (this.runs.length < 2) { this.runSelect.parentNode.style.display = 'none'; }
    this.runSelect.addEventListener('change', function () { self.selectRun(+self.runSelect.value); });
    this.search = root.querySelector('.tv-search');
    this.search.addEventListener('input', function () { self.filter = self.search.value.trim().toLowerCase();
      self.page = 0; self.pos = 0; self.refresh(); });
    this.whichSelect = root.querySelector('.tv-which');
    this.whichSelect.addEventListener('change', function () { self.which = self.whichSelect.value;
      self.page = 0; self.pos = 0; self.refresh(); });
    this.listBody = root.querySelector('.tv-list tbody');
    this.listBody.addEventListener('click', function (e) {
      var row = e.target.closest('tr'); if (!row) { return; }
      self.pos = +row.getAttribute('data-pos'); self.refresh();
    });
    root.querySelector('.tv-prev').addEventListener('click', function () { self.turn(-1); });
    root.querySelector('.tv-next').addEventListener('click', function () { self.turn(1); });
    this.pageLabel = root.querySelector('.tv-page');
    this.layerSelect = root.querySelector('.tv-layer');
    this.layerSelect.addEventListener('change', function () { self.layer = self.layerSelect.value; self.renderTrace(); });
    this.scaleSelect = root.querySelector('.tv-scale');
    this.scaleSelect.addEventListener('change', function () { self.scale = self.scaleSelect.value; self.renderTrace(); });
    this.tokens = root.querySelector('.tokens');
    this.tip = document.getElementById('tooltip');
    this.tokens.addEventListener('mouseover', function (e) { self.hover(e); });
    this.tokens.addEventListener('mousemove', function (e) { self.place(e); });
    this.tokens.addEventListener('mouseout', function () { self.tip.style.display = 'none'; });
    document.addEventListener('keydown', function (e) {
      if (e.target && /INPUT|SELECT|TEXTAREA/.test(e.target.tagName)) { return; }
      if (e.key === 'j' || e.key === 'ArrowDown') { self.step(1); }
      if (e.key === 'k' || e.key === 'ArrowUp') { self.step(-1); }
    });
  };
  TraceView.prototype.selectRun = function (i) {
    this.run = i; this.page = 0; this.pos = 0;
    var run = this.runs[i];
    this.layer = run.layer || (run.layers.length ? run.layers[run.layers.length - 1] : null);
    this.layerSelect.innerHTML = '';
    var self = this;
    run.layers.forEach(function (k) {
      var o = el('option', null, k === 'final' ? 'final (after norm)' : 'layer ' + k);
      o.value = k; if (k === self.layer) { o.selected = true; } self.layerSelect.appendChild(o);
    });
    this.layerSelect.parentNode.style.display = run.layers.length ? '' : 'none';
    this.scaleSelect.parentNode.style.display = run.layers.length ? '' : 'none';
    this.root.querySelector('.tv-omitted').textContent = run.omitted ?
      run.omitted + ' more traces are not embedded (raise --max-traces)' : '';
    this.refresh();
  };
  TraceView.prototype.visible = function () {
    var f = this.filter, which = this.which;
    return this.runs[this.run].traces.filter(function (t) {
      if (which === 'correct' && t.ok !== true) { return false; }
      if (which === 'incorrect' && t.ok === true) { return false; }
      return !f || String(t.i).indexOf(f) >= 0 || String(t.id).toLowerCase().indexOf(f) >= 0;
    });
  };
  TraceView.prototype.turn = function (delta) {
    var pages = Math.max(1, Math.ceil(this.visible().length / PAGE));
    this.page = Math.min(pages - 1, Math.max(0, this.page + delta));
    this.pos = this.page * PAGE; this.refresh();
  };
  TraceView.prototype.step = function (delta) {
    var n = this.visible().length; if (!n) { return; }
    this.pos = Math.min(n - 1, Math.max(0, this.pos + delta)); this.page = Math.floor(this.pos / PAGE); this.refresh();
  };
  TraceView.prototype.refresh = function () {
    var list = this.visible(), self = this;
    if (this.pos >= list.length) { this.pos = Math.max(0, list.length - 1); }
    this.page = Math.floor(this.pos / PAGE);
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    this.pageLabel.textContent = 'page ' + (this.page + 1) + ' / ' + pages + ' \u00b7 ' + list.length + ' traces';
    this.listBody.innerHTML = '';
    list.slice(this.page * PAGE, (this.page + 1) * PAGE).forEach(function (t, j) {
      var pos = self.page * PAGE + j, row = el('tr', pos === self.pos ? 'sel' : null), c = correctness(t);
      row.setAttribute('data-pos', String(pos));
      row.appendChild(el('td', 'num', String(t.i)));
      row.appendChild(el('td', 'mono', String(t.id).slice(0, 18)));
      row.appendChild(el('td', c[1], c[0]));
      row.appendChild(el('td', 'num', t.t ? String(t.t.length) : '\u2013'));
      var peaks = t.k && self.layer && t.k[self.layer] ? t.k[self.layer].length : null;
      row.appendChild(el('td', 'num', peaks === null ? '\u2013' : String(peaks)));
      self.listBody.appendChild(row);
    });
    this.current = list[this.pos] || null;
    this.renderTrace();
  };
  TraceView.prototype.range = function (t) {
    var values;
    if (this.scale === 'run') {
      var key = this.run + ':' + this.layer;
      if (!this.runRange[key]) {
        var lo = Infinity, hi = -Infinity, layer = this.layer;
        this.runs[this.run].traces.forEach(function (u) {
          ((u.m && u.m[layer]) || []).forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
        });
        this.runRange[key] = [lo, hi];
      }
      return this.runRange[key];
    }
    values = (t.m && t.m[this.layer]) || [];
    var a = Infinity, b = -Infinity;
    values.forEach(function (v) { if (v !== null) { a = Math.min(a, v); b = Math.max(b, v); } });
    return [a, b];
  };
  TraceView.prototype.renderTrace = function () {
    var t = this.current, run = this.runs[this.run], box = this.tokens, layer = this.layer;
    var head = this.root.querySelector('.tv-title'), info = this.root.querySelector('.tv-info');
    box.innerHTML = ''; info.textContent = '';
    this.root.querySelector('.spark-holder').innerHTML = '';
    var prompt = this.root.querySelector('details.prompt pre');
    if (!t) { head.textContent = 'no trace matches'; prompt.textContent = ''; box.setAttribute('data-count', '0'); return; }
    var c = correctness(t);
    head.textContent = 'sample ' + t.i + ' \u00b7 ' + t.id;
    var badge = el('span', c[1], ' ' + c[0] + ' ');
    head.appendChild(badge);
    info.textContent = 'answer ' + (t.x === null || t.x === undefined ? '(none)' : show(t.x)) + ' \u00b7 gold ' +
      show(t.g) + ' \u00b7 ' + (t.t ? t.t.length + ' tokens' : 'text only') + (t.sr ? ' \u00b7 stop: ' + t.sr : '');
    prompt.textContent = t.p || '';
    if (!t.t) {
      box.appendChild(el('span', 'plain', t.c || ''));
      box.setAttribute('data-count', '0');
      document.body.setAttribute('data-rendered', String(t.i));
      return;
    }
    var mi = (t.m && layer && t.m[layer]) || null, peaks = {};
    ((t.k && layer && t.k[layer]) || []).forEach(function (s) { peaks[s] = true; });
    var r = mi ? this.range(t) : [0, 1], lo = r[0], span = (r[1] - r[0]) || 1;
    var legend = this.root.querySelector('.tv-range');
    legend.textContent = mi ? fmt(lo) + ' \u2026 ' + fmt(r[1]) : 'no MI for this trace';
    var frag = document.createDocumentFragment(), vocab = run.vocab;
    for (var s = 0; s < t.t.length; s++) {
      var id = t.t[s], text = vocab[id], node = el('span', peaks[s] ? 'tok peak' : 'tok');
      if (text === undefined || text === '') { text = '\u27e8' + id + '\u27e9'; }
      node.textContent = text;
      node.setAttribute('data-s', String(s));
      if (mi && mi[s] !== null && mi[s] !== undefined) {
        var v = (mi[s] - lo) / span;
        node.style.backgroundColor = ramp(v);
        if (v > 0.72) { node.style.color = '#fff'; }
      }
      frag.appendChild(node);
    }
    box.appendChild(frag);
    box.setAttribute('data-count', String(t.t.length));
    box.setAttribute('data-layer', String(layer));
    if (mi) { this.spark(mi, peaks, lo, r[1]); }
    document.body.setAttribute('data-rendered', String(t.i));
  };
  TraceView.prototype.spark = function (mi, peaks, lo, hi) {
    var ns = 'http://www.w3.org/2000/svg', w = 1000, h = 70, n = mi.length, span = (hi - lo) || 1;
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'spark'); svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('preserveAspectRatio', 'none');
    var pts = [], marks = [];
    for (var s = 0; s < n; s++) {
      if (mi[s] === null) { continue; }
      var x = n > 1 ? 4 + s * (w - 8) / (n - 1) : w / 2, y = h - 6 - (mi[s] - lo) / span * (h - 12);
      pts.push(x.toFixed(1) + ',' + y.toFixed(1));
      if (peaks[s]) { marks.push([x, y, s]); }
    }
    var line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', pts.join(' ')); line.setAttribute('fill', 'none');
    line.setAttribute('stroke', '#3b5bdb'); line.setAttribute('stroke-width', '1.5');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(line);
    var self = this;
    marks.forEach(function (m) {
      var dot = document.createElementNS(ns, 'rect');
      dot.setAttribute('x', (m[0] - 3).toFixed(1)); dot.setAttribute('y', (m[1] - 3).toFixed(1));
      dot.setAttribute('width', '6'); dot.setAttribute('height', '6'); dot.setAttribute('fill', '#c92a2a');
      dot.style.cursor = 'pointer';
      dot.addEventListener('click', function () { self.jump(m[2]); });
      svg.appendChild(dot);
    });
    this.root.querySelector('.spark-holder').appendChild(svg);
  };
  TraceView.prototype.jump = function (step) {
    var node = this.tokens.querySelector('[data-s="' + step + '"]');
    if (!node) { return; }
    var old = this.tokens.querySelector('.hl'); if (old) { old.classList.remove('hl'); }
    node.classList.add('hl'); node.scrollIntoView({block: 'center'});
  };
  TraceView.prototype.hover = function (e) {
    var node = e.target;
    if (!node.classList || !node.classList.contains('tok')) { return; }
    var t = this.current, s = +node.getAttribute('data-s'), layer = this.layer;
    var mi = t.m && layer && t.m[layer] ? t.m[layer][s] : null;
    var peak = t.k && layer && t.k[layer] && t.k[layer].indexOf(s) >= 0;
    this.tip.textContent = 'step     ' + s + '\nMI       ' + fmt(mi) + (peak ? '  (peak)' : '') +
      '\ntoken id ' + t.t[s] + '  ' + show(this.runs[this.run].vocab[t.t[s]] || '') +
      '\nlayer    ' + (layer === null ? 'n/a' : layer);
    this.tip.style.display = 'block';
    this.place(e);
  };
  TraceView.prototype.place = function (e) {
    var x = e.clientX + 14, y = e.clientY + 16, tip = this.tip;
    if (x + tip.offsetWidth > window.innerWidth - 8) { x = e.clientX - tip.offsetWidth - 10; }
    if (y + tip.offsetHeight > window.innerHeight - 8) { y = e.clientY - tip.offsetHeight - 10; }
    tip.style.left = x + 'px'; tip.style.top = y + 'px';
  };

  // #run=1&trace=7&layer=final selects a run, a trace (its sample index) and a layer: shareable views.
  TraceView.prototype.follow = function (hash) {
    var params = {};
    String(hash || '').replace(/^#/, '').split('&').forEach(function (part) {
      var kv = part.split('='); if (kv.length === 2) { params[kv[0]] = decodeURIComponent(kv[1]); }
    });
    if (params.run !== undefined && this.runs[+params.run]) { this.runSelect.value = params.run; this.selectRun(+params.run); }
    if (params.layer !== undefined && this.runs[this.run].layers.indexOf(params.layer) >= 0) {
      this.layer = params.layer; this.layerSelect.value = params.layer;
    }
    if (params.trace !== undefined) {
      var list = this.visible();
      for (var p = 0; p < list.length; p++) { if (String(list[p].i) === params.trace) { this.pos = p; break; } }
    }
    this.refresh();
  };

  function start() {
    var holder = document.getElementById('trace-data');
    var root = document.getElementById('trace-view');
    if (holder && root) {
      var runs = JSON.parse(holder.textContent);
      if (runs.length) {
        var view = new TraceView(root, runs);
        window.reasonlensTraceView = view;
        view.follow(location.hash);
      }
    }
    document.body.setAttribute('data-ready', '1');
  }
  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', start); } else { start(); }
})();
"""

TRACE_VIEW = """
<div class="tv" id="trace-view">
  <div class="tv-list">
    <div class="controls"><label>run <select class="tv-run"></select></label></div>
    <div class="controls">
      <input class="tv-search" type="search" placeholder="filter by index or id" aria-label="filter traces">
      <select class="tv-which" aria-label="correctness filter">
        <option value="all">all</option><option value="correct">correct</option>
        <option value="incorrect">not correct</option>
      </select>
    </div>
    <table class="data"><thead><tr><th>#</th><th>id</th><th></th><th>tok</th><th>peaks</th></tr></thead>
      <tbody></tbody></table>
    <div class="pager"><button class="tv-prev" type="button">&#8592;</button><span class="tv-page"></span>
      <button class="tv-next" type="button">&#8594;</button></div>
    <div class="pager tv-omitted"></div>
  </div>
  <div class="tv-main">
    <div class="tv-head">
      <span class="title tv-title"></span>
      <label>MI of <select class="tv-layer"></select></label>
      <label>colour scale <select class="tv-scale"><option value="trace">this trace</option>
        <option value="run">all traces of the run</option></select></label>
      <span class="legend-bar"><span>low</span><span class="ramp"></span><span>high</span>
        <span class="tv-range mono"></span><span class="peak-swatch"></span><span>peak</span></span>
    </div>
    <div class="tv-info help"></div>
    <div class="spark-holder"></div>
    <div class="tokens" data-count="0"></div>
    <details class="prompt"><summary>prompt</summary><pre></pre></details>
  </div>
</div>
"""


def json_for_script(data: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (no ``</script>``, no HTML comment openers)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def ramp_gradient() -> str:
    stops = ["#ffffe5", "#ffeda0", "#fec44f", "#f88324", "#d94801", "#8c2d04"]
    return f"linear-gradient(to right, {', '.join(stops)})"


def render_page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str, trace_runs: list[dict]) -> str:
    """The whole document. ``nav`` is (anchor id, label) per section; ``body`` the sections' HTML."""
    links = "".join(f'<a href="#{escape(anchor)}">{escape(label)}</a>' for anchor, label in nav)
    data = (
        f'<script type="application/json" id="trace-data">{json_for_script(trace_runs)}</script>' if trace_runs else ""
    )
    css = CSS + f".legend-bar .ramp {{ background:{ramp_gradient()}; }}\n"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{css}</style></head>\n<body>"
        f'<header class="top"><h1>{escape(title)}</h1><nav>{links}</nav>'
        f'<span class="meta">{escape(subtitle)}</span></header>'
        '<div id="js-errors" hidden></div>'
        f'<main>{body}</main><div id="tooltip"></div>{data}<script>{SCRIPT}</script></body></html>\n'
    )
