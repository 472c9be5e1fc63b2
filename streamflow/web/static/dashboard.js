/* streamflow dashboard: polls the job's JSON endpoints every second and draws the job
 * graph (SVG), three charts (canvas), the checkpoint history and the hot spots.
 * Plain JavaScript, no dependencies: the job serves this file itself. One file (~600
 * lines) on purpose: the page loads it without a build step or module loader. Sections,
 * in order: formatting, colours, the job graph, charts, checkpoints, hot spots and
 * failures, polling. */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var SVG = "http://www.w3.org/2000/svg";
  var PALETTE = ["#3b74d6", "#e8833a", "#2ca05a", "#cf3f44", "#8d63c6", "#8c5a4b", "#d868b8",
                 "#7f7f7f", "#b7b52a", "#1fb4c9"];

  var state = {
    graph: null,
    colours: {},       // vertex id -> series colour
    nodes: {},         // vertex id -> {box, hatch, lines, cells: {task: {rect, hatch, title}}}
    edges: [],         // [{edge, path, label, kind, arrow}]
    points: [],        // chart history, oldest first
    events: [],        // restarts
    lastPoint: 0,      // wall time of the newest chart point
    windowSeconds: 300,
    expanded: {},      // checkpoint id -> true
    updates: 0,
    failedPolls: 0,
    started: performance.now(),
    firstRender: null,
  };
  window.sfDashboard = state;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function getJSON(path) {
    return fetch(path, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }

  // -- formatting ----------------------------------------------------------------------

  function fmtRate(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + "M/s";
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k/s";
    return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + "/s";
  }
  function fmtCount(v) {
    if (v >= 1e9) return (v / 1e9).toFixed(2) + "G";
    if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v));
  }
  function fmtSeconds(s) {   // a duration given in seconds
    if (s === null || s === undefined) return "–";
    if (s === 0) return "0";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
    if (s < 60) return s.toFixed(2) + " s";
    return fmtUptime(s);
  }
  function fmtUptime(s) {
    s = Math.max(0, Math.floor(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return h ? h + "h " + two(m) + "m " + two(sec) + "s" : m ? m + "m " + two(sec) + "s" : sec + "s";
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return "–";
    if (b < 1024) return b + " B";
    if (b < 1024 * 1024) return (b / 1024).toFixed(1) + " KiB";
    if (b < 1024 * 1024 * 1024) return (b / 1024 / 1024).toFixed(1) + " MiB";
    return (b / 1024 / 1024 / 1024).toFixed(2) + " GiB";
  }
  function fmtPct(ratio) { return Math.round(ratio * 100) + "%"; }
  function fmtClock(t) {
    var d = new Date(t * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  // -- colours ---------------------------------------------------------------------------

  function busyColour(busyRatio) {   // Flink's scale: blue when idle, red when busy
    var b = Math.max(0, Math.min(1, busyRatio));
    return "hsl(" + Math.round(214 * (1 - b)) + ", 66%, " + (46 - 4 * Math.sin(Math.PI * b)) + "%)";
  }
  function fillColour(fill) {
    var f = Math.max(0, Math.min(1, fill));
    if (f < 0.5) return mix([183, 193, 207], [224, 160, 27], f * 2);
    return mix([224, 160, 27], [210, 60, 60], (f - 0.5) * 2);
  }
  function mix(a, b, t) {
    return "rgb(" + a.map(function (x, i) { return Math.round(x + (b[i] - x) * t); }).join(",") + ")";
  }
  function hatchOpacity(bpRatio) { return bpRatio < 0.02 ? 0 : 0.2 + 0.45 * Math.min(1, bpRatio); }

  // -- the job graph ---------------------------------------------------------------------

  var NODE_W = 214, CELL = 14, GAP = 3, PER_ROW = 11, COL_GAP = 84, ROW_GAP = 30, INFO_H = 58;

  function cellRows(v) { return Math.ceil(v.parallelism / PER_ROW); }
  function bandHeight(v) { return 46 + cellRows(v) * (CELL + GAP) + 4; }
  function nodeHeight(v) { return bandHeight(v) + INFO_H; }

  function layout(graph) {
    var layer = {}, preds = {};
    graph.vertices.forEach(function (v) { layer[v.id] = 0; preds[v.id] = []; });
    graph.edges.forEach(function (e) { preds[e.downstream].push(e.upstream); });
    // longest path from a source; vertices come in topological order from the job
    for (var pass = 0; pass < graph.vertices.length; pass++) {
      graph.edges.forEach(function (e) { layer[e.downstream] = Math.max(layer[e.downstream], layer[e.upstream] + 1); });
    }
    var columns = [];
    graph.vertices.forEach(function (v) { (columns[layer[v.id]] = columns[layer[v.id]] || []).push(v); });
    var order = {};
    columns.forEach(function (col, c) {
      if (c > 0) {  // barycentre of predecessors: fewer crossings
        col.sort(function (a, b) { return centre(a) - centre(b); });
      }
      col.forEach(function (v, i) { order[v.id] = i; });
    });
    function centre(v) {
      var p = preds[v.id];
      if (!p.length) return 0;
      return p.reduce(function (s, id) { return s + order[id]; }, 0) / p.length;
    }
    var heights = columns.map(function (col) {
      return col.reduce(function (s, v) { return s + nodeHeight(v); }, 0) + ROW_GAP * (col.length - 1);
    });
    var tallest = Math.max.apply(null, heights);
    var pos = {};
    columns.forEach(function (col, c) {
      var y = 16 + (tallest - heights[c]) / 2;
      col.forEach(function (v) {
        pos[v.id] = { x: 20 + c * (NODE_W + COL_GAP), y: y, w: NODE_W, h: nodeHeight(v) };
        y += nodeHeight(v) + ROW_GAP;
      });
    });
    return { pos: pos, width: 40 + columns.length * NODE_W + (columns.length - 1) * COL_GAP, height: tallest + 32 };
  }

  function renderGraph(graph) {
    var box = layout(graph), fits = [];
    var svg = el("svg", { width: "100%", viewBox: "0 0 " + box.width + " " + box.height,
                         role: "img", "aria-label": "job graph" });
    svg.style.maxWidth = box.width + "px";
    var defs = el("defs", {}, svg);
    var pattern = el("pattern", { id: "hatch", patternUnits: "userSpaceOnUse", width: 7, height: 7,
                                  patternTransform: "rotate(45)" }, defs);
    el("rect", { width: 3, height: 7, fill: "#111" }, pattern);
    var marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9,
                                markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a6" }, marker);

    var edgeLayer = el("g", { class: "edges" }, svg);
    graph.edges.forEach(function (e) {
      var a = box.pos[e.upstream], b = box.pos[e.downstream];
      var x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x - 4, y2 = b.y + b.h / 2;
      var mx = (x1 + x2) / 2;
      var g = el("g", { class: "edge", "data-upstream": e.upstream, "data-downstream": e.downstream }, edgeLayer);
      var path = el("path", { d: "M" + x1 + "," + y1 + " C" + mx + "," + y1 + " " + mx + "," + y2 + " " + x2 + "," + y2,
                              fill: "none", stroke: "#b7c1cf", "stroke-width": 2, "marker-end": "url(#arrow)",
                              "stroke-dasharray": e.dead_letter ? "5 4" : "none" }, g);
      var lx = mx, ly = (y1 + y2) / 2;
      var label = el("text", { x: lx, y: ly - 9, "text-anchor": "middle", class: "edge-label" }, g);
      label.textContent = "–";
      var kind = el("text", { x: lx, y: ly + 17, "text-anchor": "middle", class: "edge-kind" }, g);
      kind.textContent = e.dead_letter ? "dead letters" : e.partitioning;
      var title = el("title", {}, g);
      state.edges.push({ edge: e, path: path, label: label, title: title });
    });

    var nodeLayer = el("g", { class: "vertices" }, svg);
    graph.vertices.forEach(function (v, i) {
      state.colours[v.id] = PALETTE[i % PALETTE.length];
      var p = box.pos[v.id], band = bandHeight(v);
      var g = el("g", { class: "vertex", "data-vertex": v.id, transform: "translate(" + p.x + "," + p.y + ")" }, nodeLayer);
      var title = el("title", {}, g);
      el("clipPath", { id: "clip-" + i }, defs).appendChild(el("rect", { width: p.w, height: p.h, rx: 8 }));
      var clipped = el("g", { "clip-path": "url(#clip-" + i + ")" }, g);
      el("rect", { width: p.w, height: p.h, fill: "#fff" }, clipped);
      var body = el("rect", { width: p.w, height: band, fill: busyColour(0) }, clipped);
      var hatch = el("rect", { width: p.w, height: band, fill: "url(#hatch)", opacity: 0 }, clipped);
      el("rect", { x: 0, y: band, width: 5, height: p.h - band, fill: state.colours[v.id] }, clipped);
      el("rect", { width: p.w, height: p.h, rx: 8, fill: "none", stroke: "#c3cbd7" }, g);
      fits.push([el("text", { x: 12, y: 19, class: "vertex-name" }, g), v.name, p.w - 22]);
      fits.push([el("text", { x: 12, y: 34, class: "vertex-sub" }, g),
                 (v.id === v.name ? "" : v.id + " · ") + "parallelism " + v.parallelism, p.w - 22]);
      var cells = {};
      v.tasks.forEach(function (task, k) {
        var cx = 12 + (k % PER_ROW) * (CELL + GAP), cy = 43 + Math.floor(k / PER_ROW) * (CELL + GAP);
        var cg = el("g", { class: "subtask-cell" }, g);
        var cTitle = el("title", {}, cg);
        cTitle.textContent = task;
        var rect = el("rect", { x: cx, y: cy, width: CELL, height: CELL, rx: 3, fill: busyColour(0),
                                stroke: "#fff", "stroke-width": 1.5, class: "subtask", "data-task": task }, cg);
        var cHatch = el("rect", { x: cx + 1, y: cy + 1, width: CELL - 2, height: CELL - 2, rx: 2, fill: "url(#hatch)",
                                  opacity: 0 }, cg);
        cells[task] = { rect: rect, hatch: cHatch, title: cTitle };
      });
      var line1 = el("text", { x: 14, y: band + 17, class: "vertex-line" }, g);
      var line2 = el("text", { x: 14, y: band + 33, class: "vertex-line" }, g);
      var line3 = el("text", { x: 14, y: band + 49, class: "vertex-line muted-line" }, g);
      state.nodes[v.id] = { vertex: v, body: body, hatch: hatch, title: title, cells: cells,
                            lines: [line1, line2, line3] };
    });
    var container = $("graph");
    container.textContent = "";
    container.appendChild(svg);
    fits.forEach(function (f) { fitText(f[0], f[1], f[2]); });  // measured once laid out
  }

  function fitText(node, text, width) {   // the longest prefix of text (and "…") that fits
    node.textContent = text;
    if (node.getComputedTextLength() <= width) return;
    var lo = 0, hi = text.length;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      node.textContent = text.slice(0, mid) + "…";
      if (node.getComputedTextLength() <= width) lo = mid; else hi = mid - 1;
    }
    node.textContent = text.slice(0, lo) + "…";
  }

  function setLine(text, parts) {   // parts: [text, class] spans of one line
    text.textContent = "";
    parts.forEach(function (part) {
      var span = el("tspan", part[1] ? { class: part[1] } : {}, text);
      span.textContent = part[0];
    });
  }

  function vertexStats(v, metrics) {
    var s = { busy: 0, bp: 0, idle: 1000, in: 0, out: 0, wm: null, wmMissing: false, running: 0 };
    var head = v.operators[0].uid, tail = v.operators[v.operators.length - 1].uid;
    v.tasks.forEach(function (task, i) {
      var t = metrics.tasks[task];
      if (!t) return;
      s.running++;
      s.busy = Math.max(s.busy, t.busyTimeMsPerSecond || 0);
      s.bp = Math.max(s.bp, t.backPressuredTimeMsPerSecond || 0);
      s.idle = Math.min(s.idle, t.idleTimeMsPerSecond || 0);
      var w = t.currentOutputWatermark;
      if (w === undefined || w === null) s.wmMissing = true;
      else s.wm = s.wm === null ? w : Math.min(s.wm, w);
      var hi = metrics.operators[head + "[" + i + "]"], to = metrics.operators[tail + "[" + i + "]"];
      if (hi) s.in += hi.numRecordsInPerSecond || 0;
      if (to) s.out += to.numRecordsOutPerSecond || 0;
    });
    if (!s.running) s.idle = 0;
    return s;
  }

  function updateGraph(metrics) {
    Object.keys(state.nodes).forEach(function (id) {
      var node = state.nodes[id], v = node.vertex, s = vertexStats(v, metrics);
      node.body.setAttribute("fill", s.running ? busyColour(s.busy / 1000) : "#8a94a6");
      node.hatch.setAttribute("opacity", hatchOpacity(s.bp / 1000));
      setLine(node.lines[0], [["busy ", ""], [fmtPct(s.busy / 1000), s.busy > 800 ? "hot" : "strong"],
                              ["  backpressured ", ""], [fmtPct(s.bp / 1000), s.bp > 500 ? "hot" : "strong"]]);
      node.lines[1].textContent = (v.source ? "read " : "in ") + fmtRate(s.in) +
        (v.sink ? "" : " · out " + fmtRate(s.out));
      node.lines[2].textContent = s.wm === null || s.wmMissing ? "no watermark" :
        "watermark " + fmtClock(s.wm) + ", lag " + fmtSeconds(Math.max(0, metrics.time - s.wm));
      node.title.textContent = v.name + " (" + v.id + ")\noperators: " +
        v.operators.map(function (o) { return o.uid + " (" + o.kind + ")"; }).join(" → ");
      v.tasks.forEach(function (task) {
        var t = metrics.tasks[task], cell = node.cells[task];
        if (!t) { cell.rect.setAttribute("fill", "#8a94a6"); cell.hatch.setAttribute("opacity", 0); return; }
        cell.rect.setAttribute("fill", busyColour((t.busyTimeMsPerSecond || 0) / 1000));
        cell.hatch.setAttribute("opacity", hatchOpacity((t.backPressuredTimeMsPerSecond || 0) / 1000));
        cell.title.textContent = task + "\nbusy " + fmtPct((t.busyTimeMsPerSecond || 0) / 1000) +
          ", backpressured " + fmtPct((t.backPressuredTimeMsPerSecond || 0) / 1000) +
          ", idle " + fmtPct((t.idleTimeMsPerSecond || 0) / 1000);
      });
    });
    var fills = {};
    Object.keys(metrics.channels).forEach(function (name) {
      var c = metrics.channels[name];
      var up = c.upstream.replace(/\[\d+\]$/, ""), down = c.downstream.replace(/\[\d+\]$/, "");
      var key = up + "->" + down, f = fills[key] || (fills[key] = { max: 0, sum: 0, n: 0, full: 0 });
      f.max = Math.max(f.max, c.usage); f.sum += c.usage; f.n++;
      if (c.usage >= 1) f.full++;
    });
    state.edges.forEach(function (e) {
      var f = fills[e.edge.upstream + "->" + e.edge.downstream];
      if (!f) return;
      e.path.setAttribute("stroke", fillColour(f.max));
      e.path.setAttribute("stroke-width", 2 + 5 * f.max);
      e.label.textContent = fmtPct(f.max) + " full";
      e.label.setAttribute("class", "edge-label" + (f.max >= 1 ? " hot" : ""));
      e.title.textContent = e.edge.upstream + " → " + e.edge.downstream + " (" + e.edge.partitioning + "): " +
        f.n + " channels, fullest " + fmtPct(f.max) + ", mean " + fmtPct(f.sum / f.n) + ", " + f.full + " full";
    });
  }

  // -- charts ------------------------------------------------------------------------------

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : m <= 6 ? 6 : m <= 8 ? 8 : 10) * p;  // quarters stay round
  }

  function drawChart(canvasId, legendId, key, opts) {
    var canvas = $(canvasId), ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var now = state.lastPoint || Date.now() / 1000, t0 = now - state.windowSeconds;
    var pts = state.points.filter(function (p) { return p.t >= t0; });
    var ids = state.graph.vertices.filter(opts.include || function () { return true; }).map(function (v) { return v.id; });
    var top = opts.fixedMax || 0;
    if (!opts.fixedMax) {
      pts.forEach(function (p) { ids.forEach(function (id) {
        var v = p.vertices[id] && p.vertices[id][key];
        if (v !== null && v !== undefined && v > top) top = v;
      }); });
      top = niceMax(top * 1.08);
    }
    var L = 48, R = 8, T = 8, B = 22, pw = w - L - R, ph = h - T - B;
    function X(t) { return L + (t - t0) / state.windowSeconds * pw; }
    function Y(v) { return T + ph - Math.min(1, v / top) * ph; }
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#e6e9ef"; ctx.fillStyle = "#6b7585"; ctx.lineWidth = 1;
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (var i = 0; i <= 4; i++) {
      var v = top * i / 4, y = Y(v);
      ctx.beginPath(); ctx.moveTo(L, y + 0.5); ctx.lineTo(w - R, y + 0.5); ctx.stroke();
      ctx.fillText(opts.tick(v), L - 6, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    var step = state.windowSeconds <= 60 ? 15 : state.windowSeconds <= 300 ? 60 : 120;
    for (var s = 0; s <= state.windowSeconds; s += step) {
      var x = X(now - s);
      ctx.fillText(s === 0 ? "now" : "−" + (s >= 60 ? s / 60 + "m" : s + "s"), Math.min(x, w - R - 12), h - B + 6);
    }
    state.events.forEach(function (e) {
      if (e.t < t0) return;
      ctx.save(); ctx.strokeStyle = "#d64545"; ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(X(e.t), T); ctx.lineTo(X(e.t), T + ph); ctx.stroke(); ctx.restore();
    });
    var legend = $(legendId);
    legend.textContent = "";
    var any = false;
    ids.forEach(function (id) {
      ctx.strokeStyle = state.colours[id]; ctx.lineWidth = 1.8; ctx.beginPath();
      var drawing = false, last = null;
      pts.forEach(function (p) {
        var v = p.vertices[id] ? p.vertices[id][key] : null;
        if (v === null || v === undefined) { drawing = false; return; }
        any = true; last = v;
        if (drawing) ctx.lineTo(X(p.t), Y(v)); else ctx.moveTo(X(p.t), Y(v));
        drawing = true;
      });
      ctx.stroke();
      var item = html("span");
      var swatch = html("i"); swatch.style.background = state.colours[id];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(id + " " + (last === null ? "–" : opts.value(last))));
      legend.appendChild(item);
    });
    if (!any && opts.empty) {
      ctx.fillStyle = "#6b7585"; ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.font = "13px system-ui";
      ctx.fillText(opts.empty, L + pw / 2, T + ph / 2);
    }
  }

  function drawCharts() {
    if (!state.graph) return;
    drawChart("chart-throughput", "legend-throughput", "in",
              { tick: function (v) { return fmtRate(v).replace("/s", ""); }, value: fmtRate });
    drawChart("chart-backpressure", "legend-backpressure", "backpressured",
              { fixedMax: 1000, tick: function (v) { return String(Math.round(v)); },
                value: function (v) { return Math.round(v) + " ms/s"; },
                include: function (v) { return !v.sink; } });
    drawChart("chart-watermark", "legend-watermark", "watermark_lag",
              { tick: function (v) { return v === 0 ? "0" : v < 1 ? Math.round(v * 1000) + "ms" : +v.toFixed(1) + "s"; },
                value: fmtSeconds,
                empty: "no watermarks: the job's sources emit none" });
  }

  // -- checkpoints -----------------------------------------------------------------------

  var PHASES = [["start_delay", "Start delay"], ["alignment", "Alignment"], ["sync", "Sync"], ["async", "Async"]];

  function slowest(subtasks, key) {
    var best = null;
    Object.keys(subtasks).forEach(function (task) {
      var v = subtasks[task][key];
      if (v !== null && v !== undefined && (best === null || v > best)) best = v;
    });
    return best;
  }

  function renderCheckpoints(cp) {
    $("checkpoint-summary").textContent = cp.completed + " completed · " + cp.failed + " failed" +
      (cp.restored_from !== null ? " · restored from " + cp.restored_from : "");
    var progress = $("checkpoints-in-progress");
    progress.textContent = "";
    cp.in_progress.forEach(function (c) {
      var row = html("div", "progress");
      row.textContent = "Checkpoint " + c.id + " in progress for " + fmtSeconds(c.elapsed) + ": " +
        c.acknowledged + " of " + c.expected + " operator subtasks acknowledged";
      var bar = html("div", "bar"), fill = html("span");
      fill.style.width = (100 * c.acknowledged / Math.max(1, c.expected)) + "%";
      bar.appendChild(fill); row.appendChild(bar); progress.appendChild(row);
    });
    var body = $("checkpoint-rows");
    body.textContent = "";
    var history = cp.history.slice().reverse();
    if (!history.length) {
      var none = html("tr"), td = html("td", "muted", "no checkpoint yet");
      td.colSpan = 11; none.appendChild(td); body.appendChild(none);
    }
    history.forEach(function (c) {
      var tr = html("tr", "checkpoint");
      tr.dataset.checkpoint = c.id;
      var open = !!state.expanded[c.id];
      var persisted = Object.keys(c.subtasks).reduce(function (s, k) { return s + c.subtasks[k].persisted_bytes; }, 0);
      var cells = [
        [open ? "▾" : "▸", "toggle"], [String(c.id) + (c.savepoint ? " (savepoint)" : c.final ? " (final)" : ""), ""],
        [null, "status"], [fmtClock(c.triggered_at), ""], [fmtSeconds(c.duration), "num"], [fmtBytes(c.size), "num"],
      ];
      cells.forEach(function (cell) {
        var td = html("td", cell[1]);
        if (cell[1] === "status") {
          var badge = html("span", "badge " + c.status, c.status);
          td.appendChild(badge);
          if (c.reason) td.title = c.reason;
        } else td.textContent = cell[0];
        tr.appendChild(td);
      });
      PHASES.forEach(function (p) { tr.appendChild(html("td", "num", fmtSeconds(slowest(c.subtasks, p[0])))); });
      tr.appendChild(html("td", "num", fmtBytes(persisted)));
      tr.addEventListener("click", function () {
        if (state.expanded[c.id]) delete state.expanded[c.id]; else state.expanded[c.id] = true;
        renderCheckpoints(cp);
      });
      body.appendChild(tr);
      if (open) body.appendChild(detailRow(c));
    });
  }

  function detailRow(c) {
    var tr = html("tr", "detail"), td = html("td");
    td.colSpan = 11;
    if (c.reason) td.appendChild(html("div", "muted small", "reason: " + c.reason));
    var table = html("table", "table subtable"), head = html("tr");
    ["Subtask", "Start delay", "Alignment", "Sync", "Async", "State size", "Persisted in-flight", "Unaligned"]
      .forEach(function (h, i) { head.appendChild(html("th", i ? "num" : "", h)); });
    var thead = html("thead"); thead.appendChild(head); table.appendChild(thead);
    var tbody = html("tbody");
    var worst = {};
    PHASES.forEach(function (p) { worst[p[0]] = slowest(c.subtasks, p[0]); });
    Object.keys(c.subtasks).forEach(function (task) {
      var s = c.subtasks[task], row = html("tr");
      row.appendChild(html("td", "", task));
      PHASES.forEach(function (p) {
        var v = s[p[0]];
        row.appendChild(html("td", "num" + (v !== null && v === worst[p[0]] && v > 0.001 ? " slowest" : ""),
                             fmtSeconds(v)));
      });
      row.appendChild(html("td", "num", fmtBytes(s.size)));
      row.appendChild(html("td", "num", fmtBytes(s.persisted_bytes)));
      row.appendChild(html("td", "num", s.unaligned ? "yes" : "no"));
      tbody.appendChild(row);
    });
    if (!Object.keys(c.subtasks).length) {
      var empty = html("tr"), e = html("td", "muted", "no subtask reached this checkpoint");
      e.colSpan = 8; empty.appendChild(e); tbody.appendChild(empty);
    }
    table.appendChild(tbody); td.appendChild(table); tr.appendChild(td);
    return tr;
  }

  // -- hot spots and failures ---------------------------------------------------------------

  function renderHotspots(metrics) {
    var root = $("hotspots");
    root.textContent = "";
    root.className = "hot";
    var tasks = Object.keys(metrics.tasks).map(function (k) { return [k, metrics.tasks[k]]; });
    section("Most backpressured tasks", tasks, function (t) { return t.backPressuredTimeMsPerSecond / 1000; }, "bp");
    section("Busiest tasks", tasks, function (t) { return t.busyTimeMsPerSecond / 1000; }, "busy");
    var channels = Object.keys(metrics.channels).map(function (k) { return [k, metrics.channels[k]]; });
    section("Fullest channels", channels, function (c) { return c.usage; }, "fill");

    function section(title, rows, value, cls) {
      root.appendChild(html("h3", "", title));
      var top = rows.map(function (r) { return [r[0], value(r[1]) || 0]; })
        .sort(function (a, b) { return b[1] - a[1]; }).slice(0, 5)
        .filter(function (r) { return r[1] >= 0.01; });
      if (!top.length) { root.appendChild(html("div", "muted small", "none")); return; }
      top.forEach(function (r) {
        var row = html("div", "hot-row");
        var name = html("span", "name", r[0]); name.title = r[0];
        var bar = html("div", "bar"), fill = html("span", cls);
        fill.style.width = Math.min(100, 100 * r[1]) + "%";
        bar.appendChild(fill);
        row.appendChild(name); row.appendChild(bar); row.appendChild(html("span", "num", fmtPct(r[1])));
        root.appendChild(row);
      });
    }
  }

  function renderFailures(job) {
    var root = $("failures");
    root.textContent = "";
    if (!job.failures.length) {
      root.appendChild(html("div", "ok-note", "No failures since the job started."));
      return;
    }
    var times = {};
    job.restart_events.forEach(function (e) { times[e.attempt - 1] = e.t; });
    job.failures.slice().reverse().forEach(function (failure, k) {
      var attempt = job.failures.length - k;
      var box = html("div", "failure");
      var when = times[attempt] ? "restarted at " + fmtClock(times[attempt]) : "";
      box.appendChild(html("div", "when", "attempt " + attempt + " failed" + (when ? " · " + when : "")));
      box.appendChild(html("div", "", failure));
      root.appendChild(box);
    });
  }

  function renderHeader(job, metrics, cp) {
    document.title = job.job + " · streamflow";
    $("job-name").textContent = job.job;
    var status = $("job-status");
    status.textContent = job.status;
    status.className = "badge " + job.status;
    $("fact-uptime").textContent = fmtUptime(job.uptime);
    $("fact-restarts").textContent = String(job.restarts);
    var read = 0, written = 0;
    state.graph.vertices.forEach(function (v) {
      var s = vertexStats(v, metrics);
      if (v.source) read += s.in;
      if (v.sink) written += s.in;
    });
    $("fact-in").textContent = fmtRate(read);
    $("fact-out").textContent = fmtRate(written);
    $("fact-checkpoints").textContent = job.checkpointing === null ? "off" :
      cp.completed + " ok / " + cp.failed + " failed";
    var done = cp.history.filter(function (c) { return c.status === "completed"; });
    var last = done[done.length - 1];
    $("fact-last-checkpoint").textContent = last ?
      fmtSeconds(last.duration) + " · " + fmtBytes(last.size) : "–";
  }

  // -- polling -------------------------------------------------------------------------------

  function setLive(ok, text) {
    $("live-dot").className = "dot " + (ok ? "on" : "off");
    $("live-text").textContent = text;
  }

  function tick() {
    return Promise.all([
      getJSON("/api/job"), getJSON("/api/metrics"), getJSON("/api/checkpoints"),
      getJSON("/api/history?since=" + state.lastPoint),
    ]).then(function (r) {
      var job = r[0], metrics = r[1], cp = r[2], hist = r[3];
      hist.points.forEach(function (p) { state.points.push(p); });
      if (hist.points.length) state.lastPoint = hist.points[hist.points.length - 1].t;
      var keep = state.lastPoint - 620;
      while (state.points.length && state.points[0].t < keep) state.points.shift();
      state.events = hist.events;
      renderHeader(job, metrics, cp);
      updateGraph(metrics);
      drawCharts();
      renderCheckpoints(cp);
      renderHotspots(metrics);
      renderFailures(job);
      state.updates++;
      state.failedPolls = 0;
      document.body.dataset.updated = String(metrics.time);
      document.body.dataset.updates = String(state.updates);
      if (state.firstRender === null) state.firstRender = performance.now();
      setLive(true, "live · updated " + fmtClock(metrics.time));
    }).catch(function (err) {
      state.failedPolls++;
      setLive(false, state.failedPolls > 2 ? "job unreachable (ended?)" : "retrying…");
      if (state.failedPolls > 2) {
        var status = $("job-status");
        status.textContent = "unreachable"; status.className = "badge unreachable";
      }
      if (window.console) console.warn("streamflow dashboard:", err);
    });
  }

  function loop() {
    var started = performance.now();
    tick().then(function () { setTimeout(loop, Math.max(100, POLL_MS - (performance.now() - started))); });
  }

  function start() {
    getJSON("/api/graph").then(function (graph) {
      state.graph = graph;
      renderGraph(graph);
      loop();
    }).catch(function (err) {
      setLive(false, "cannot load the job graph: " + err.message);
      setTimeout(start, 2000);
    });
  }

  function controls() {
    Array.prototype.forEach.call(document.querySelectorAll(".chart-controls button"), function (button) {
      button.addEventListener("click", function () {
        state.windowSeconds = Number(button.dataset.window);
        Array.prototype.forEach.call(document.querySelectorAll(".chart-controls button"), function (b) {
          b.classList.toggle("active", b === button);
        });
        drawCharts();
      });
    });
    window.addEventListener("resize", drawCharts);
  }

  controls();
  start();
})();
