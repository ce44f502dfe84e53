/* Circuit graph in SVG: layer bands from the embedding (bottom) to the unembedding (top).
 *
 * Inside a layer the rows follow the flow through the block (attn read, q/k/v, attn write,
 * mlp read, mlp neurons, mlp write). Node order inside a row is chosen by a few barycentre
 * sweeps so edges cross less; q/k/v channels stay together per attention head (a boxed,
 * coloured group), since a head is the unit one reasons about. Edges: blue = positive weight,
 * red = negative, width ~ |weight|; dashed grey = residual-stream link; dotted = token
 * (un)embedding row.
 *
 * Readability of a big circuit: the graph is fitted to its pane on load (wheel zooms at the
 * pointer, dragging pans, the toolbar zooms and fits again); by default only the strongest
 * edges are drawn (plus each node's strongest edge, so none is left unconnected), and hovering
 * a node shows all of its edges and dims everything else.
 * Nodes with a cached explanation (`node.explanation`) show it in their tooltip; the toolbar
 * then offers labels by explanation and a search over them (docs/autointerp.md).
 * Shared by the live app and the single-file report: no dependencies, no network.
 */
(function () {
  "use strict";
  var SC = (window.SC = window.SC || {});
  var NS = "http://www.w3.org/2000/svg";

  var POS = "#2563eb";
  var NEG = "#dc2626";
  var KINDS = {  // short: the legend's name; title: the tooltip's
    resid_read: { shape: "square", fill: "#ffffff", stroke: "#4b5563", short: "read", title: "residual read (act_in)" },
    resid_write: { shape: "square", fill: "#6b7280", stroke: "#374151", short: "write", title: "residual write (resid_delta)" },
    q: { shape: "diamond", fill: "#f59e0b", stroke: "#92400e", letter: "q", short: "query", title: "query channel" },
    k: { shape: "diamond", fill: "#10b981", stroke: "#065f46", letter: "k", short: "key", title: "key channel" },
    v: { shape: "diamond", fill: "#a78bfa", stroke: "#5b21b6", letter: "v", short: "value", title: "value channel" },
    neuron: { shape: "circle", fill: "#0f766e", stroke: "#134e4a", short: "neuron", title: "MLP neuron (post_act)" },
  };
  // One colour per head index (repeats after 10): the head boxes of q/k/v rows.
  var HEAD_COLOURS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed",
    "#0891b2", "#dc2626", "#65a30d", "#c026d3", "#475569"];
  var ROW_H = 54, EMPTY_H = 26, END_H = 54, LEFT = 150, RIGHT = 30, TOP = 8;
  var CHAR_W = 6.4; // monospace 10.5px
  var TOKEN_SPACING = 64;
  var TOOLBAR_H = 34; // the toolbar floats over the pane's top edge; the fit stays below it
  var EDGE_LIMITS = [50, 100, 200, 400];
  var TOKEN_EDGES_PER_TOKEN = 3; // token rows drawn per token pill when edges are limited

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function shape(g, kind, x, y, r) {
    var st = KINDS[kind] || KINDS.neuron;
    var s;
    if (st.shape === "circle") {
      s = el("circle", { cx: x, cy: y, r: r }, g);
    } else if (st.shape === "square") {
      s = el("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r, rx: 2 }, g);
    } else {
      var d = r * 1.3;
      s = el("polygon", { points: [x, y - d, x + d, y, x, y + d, x - d, y].join(" ") }, g);
    }
    s.setAttribute("fill", st.fill);
    s.setAttribute("stroke", st.stroke);
    s.setAttribute("stroke-width", 1.5);
    s.setAttribute("class", "node-shape");
    if (st.letter) {
      var t = el("text", { x: x, y: y + 3.5, "text-anchor": "middle", class: "node-letter" }, g);
      t.textContent = st.letter;
    }
    return s;
  }

  var EXPL_CHAR_W = 5.8; // monospace 9.5px: explanation labels
  var EXPL_CHARS = 20, EXPL_LINES = 3; // an explanation label's lines and their length

  /* The tooltip's lines about a node's explanation (none when it has none). */
  function explanationTip(ex) {
    if (!ex) return "";
    if (ex.status !== "ok") return "\nexplanation: none (not clearly active on held-out text)";
    var score = ["detection " + num2(ex.detection)];
    if (ex.correlation !== null && ex.correlation !== undefined) score.push("corr " + num2(ex.correlation));
    if (ex.fuzzing !== null && ex.fuzzing !== undefined) score.push("fuzzing " + num2(ex.fuzzing));
    return "\n\n" + wrapText(ex.text, 56, 6).join("\n") + "\n" + score.join(" \u00b7 ") + " \u00b7 " + ex.explainer;
  }
  function num2(x) { return x === null || x === undefined ? "\u2013" : x.toFixed(2); }
  /* The phrase's main clause, for a label: "fires on `self`, strongest at ..." -> "on `self`". */
  function shortExplanation(text) {
    var neg = /^\(negative side\) /.test(text);
    var s = text.replace(/^\(negative side\) /, "").replace(/^fires /, "").replace(/, strongest .*$/, "");
    return (neg ? "\u2212 " : "") + s;
  }
  /* Words into at most `max` lines of `width` characters (the last one cut with an ellipsis). */
  function wrapText(text, width, max) {
    var lines = [], line = "";
    String(text).split(/\s+/).forEach(function (word) {
      while (word.length > width) { if (line) { lines.push(line); line = ""; } lines.push(word.slice(0, width)); word = word.slice(width); }
      if (!line) line = word;
      else if (line.length + 1 + word.length <= width) line += " " + word;
      else { lines.push(line); line = word; }
    });
    if (line) lines.push(line);
    if (lines.length > max) {
      lines = lines.slice(0, max);
      lines[max - 1] = lines[max - 1].slice(0, width - 1).replace(/\s+$/, "") + "\u2026";
    }
    return lines;
  }
  function escHTML(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  SC.explanationTip = explanationTip;
  SC.wrapText = wrapText;

  /* A search's result list (the graph's nodes, the latent page's latents): a head line (HTML)
   * with a button that clears the search, then a clickable row per hit, each carrying
   * data-<key>="<value>" and showing its `value` as code, its `text` and optional `extra` HTML. */
  SC.fillSearchResults = function (box, head, key, hits, onPick, onClear) {
    box.innerHTML = '<div class="search-head"><span>' + head + '</span><button type="button" class="search-close" title="clear the search">\u00d7</button></div>' +
      hits.map(function (h, i) {
        return '<div class="search-hit-item" data-' + key + '="' + escHTML(h.value) + '" data-index="' + i + '"><code>' + escHTML(h.value) + "</code> " +
          escHTML(h.text) + (h.extra || "") + "</div>";
      }).join("");
    box.querySelector(".search-close").addEventListener("click", onClear);
    box.querySelectorAll(".search-hit-item").forEach(function (item) {
      item.addEventListener("click", function () { onPick(hits[+item.dataset.index]); });
    });
  };

  function fmt(w) {
    if (w === null || w === undefined) return "(no weight)";
    var a = Math.abs(w);
    return a !== 0 && (a < 1e-3 || a >= 1e4) ? w.toExponential(3) : w.toFixed(4);
  }
  SC.fmt = fmt;

  var QKV = { q: 0, k: 1, v: 2 };
  function rowOrderKey(n) {
    if (n.kind in QKV) return [n.head, QKV[n.kind], n.channel];
    return [n.index, 0, 0];
  }

  function cmpArr(a, b) {
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
  }

  /* Rows from top to bottom, each {key, kind: 'end'|'row'|'empty', layer, row, nodes}. */
  function buildRows(graph) {
    var byRow = {};
    graph.nodes.forEach(function (n) {
      var key = n.layer + ":" + n.row;
      (byRow[key] = byRow[key] || []).push(n);
    });
    var rows = [{ key: "unembed", kind: "end", title: "unembedding", nodes: [] }];
    for (var L = graph.n_layer - 1; L >= 0; L--) {
      var any = false;
      for (var i = graph.rows.length - 1; i >= 0; i--) {
        var key = L + ":" + graph.rows[i];
        if (byRow[key]) {
          any = true;
          var nodes = byRow[key].slice().sort(function (a, b) { return cmpArr(rowOrderKey(a), rowOrderKey(b)); });
          rows.push({ key: key, kind: "row", layer: L, row: graph.rows[i], nodes: nodes,
            grouped: graph.rows[i].slice(-4) === ".qkv" });
        }
      }
      if (!any) rows.push({ key: L + ":empty", kind: "empty", layer: L, nodes: [] });
    }
    rows.push({ key: "embed", kind: "end", title: "embedding", nodes: [] });
    return rows;
  }

  /* Which edges the default view draws: the `limit` strongest circuit edges, every node's
   * strongest edge, and each token pill's few strongest rows; residual links always. */
  function visibleEdges(items, limit) {
    var show = new Set();
    if (limit === null) { items.forEach(function (a) { show.add(a); }); return show; }
    var circuit = items.filter(function (a) { return a.type === "edge"; });
    circuit.slice().sort(function (a, b) { return Math.abs(b.e.weight || 0) - Math.abs(a.e.weight || 0); })
      .slice(0, limit).forEach(function (a) { show.add(a); });
    var best = {};
    function consider(name, a, type) {
      var k = type + "|" + name;
      if (!best[k] || Math.abs(a.e.weight || 0) > Math.abs(best[k].e.weight || 0)) best[k] = a;
    }
    circuit.forEach(function (a) { consider(a.e.source, a, "edge"); consider(a.e.target, a, "edge"); });
    Object.keys(best).forEach(function (k) { show.add(best[k]); });
    var perToken = {};
    items.forEach(function (a) {
      if (a.type === "residual") show.add(a);
      if (a.type !== "token") return;
      var pill = String(a.e.source).indexOf("embed.") === 0 ? a.e.source : a.e.target;
      (perToken[pill] = perToken[pill] || []).push(a);
    });
    Object.keys(perToken).forEach(function (pill) {
      perToken[pill].sort(function (a, b) { return Math.abs(b.e.weight) - Math.abs(a.e.weight); })
        .slice(0, TOKEN_EDGES_PER_TOKEN).forEach(function (a) { show.add(a); });
    });
    return show;
  }

  SC.renderGraph = function (container, graph, opts) {
    opts = opts || {};
    if (container._scCleanup) container._scCleanup();
    container.innerHTML = "";
    var tooltip = opts.tooltip || { show: function () {}, move: function () {}, hide: function () {} };
    var rows = buildRows(graph);
    function pills(list) { return (list || []).map(function (c) { return { name: c.id, token: c.token, kind: "logit" }; }); }
    rows[0].nodes = pills(graph.unembed_tokens);
    rows[rows.length - 1].nodes = pills(graph.embed_tokens);

    var maxLabel = 8;
    graph.nodes.forEach(function (n) { maxLabel = Math.max(maxLabel, n.name.length); });
    var spacing = Math.max(96, maxLabel * CHAR_W + 18);
    var maxCount = 1, maxTokens = 1;
    rows.forEach(function (r) {
      if (r.kind === "end") maxTokens = Math.max(maxTokens, r.nodes.length);
      else maxCount = Math.max(maxCount, r.nodes.length);
    });
    // A wide circuit does not fit full names side by side: label each node with its index
    // (the row label carries the location) and pack the nodes closer; the view is fitted to
    // the pane afterwards, and zooming in brings the labels back to a readable size.
    var avail = Math.max(400, (container.clientWidth || 1000) - LEFT - RIGHT);
    var compact = maxCount * spacing > 1.6 * avail;  // beyond that, the fit would shrink names unreadably
    // Labelled with explanations: room for a phrase's main clause (3 short lines) under every
    // node, never compact; a wide circuit is then read by zooming in.
    var explained = graph.nodes.filter(function (n) { return n.explanation && n.explanation.status === "ok"; });
    var labelMode = opts.labels === "explanations" && explained.length ? "explanations" : "names";
    var rowH = ROW_H;
    if (labelMode === "explanations") {
      spacing = Math.max(spacing, EXPL_CHARS * EXPL_CHAR_W + 16);
      compact = false;
      rowH = ROW_H + (EXPL_LINES - 2) * 10;
    }
    if (compact) {
      var maxIdx = 3;
      graph.nodes.forEach(function (n) { maxIdx = Math.max(maxIdx, String(n.index).length); });
      spacing = maxIdx * CHAR_W + 14;
    }
    var headGap = spacing * 0.6;

    function gapBefore(r, i) {
      if (i === 0) return 0;
      var gap = r.kind === "end" ? TOKEN_SPACING : spacing;
      return gap + (r.grouped && r.nodes[i].head !== r.nodes[i - 1].head ? headGap : 0);
    }
    function span(r) {
      var s = 0;
      for (var i = 1; i < r.nodes.length; i++) s += gapBefore(r, i);
      return s;
    }
    var inner = spacing;
    rows.forEach(function (r) { inner = Math.max(inner, span(r) + (r.kind === "end" ? TOKEN_SPACING : spacing)); });
    var width = LEFT + inner + RIGHT;
    var cx = LEFT + inner / 2;

    // y of every row
    var y = TOP;
    rows.forEach(function (r) {
      var h = r.kind === "row" ? rowH : r.kind === "empty" ? EMPTY_H : END_H;
      r.top = y; r.height = h; r.y = y + h / 2 - (r.kind === "row" ? 6 : 0);
      y += h;
    });
    var height = y + TOP;

    // neighbours for ordering (edges, residual links, readout)
    var nb = {};
    function link(a, b) { (nb[a] = nb[a] || []).push(b); (nb[b] = nb[b] || []).push(a); }
    var allEdges = [];
    (graph.edges || []).forEach(function (e) { link(e.source, e.target); allEdges.push({ e: e, type: "edge" }); });
    (graph.residual_links || []).forEach(function (e) { link(e.source, e.target); allEdges.push({ e: e, type: "residual" }); });
    (graph.token_edges || []).forEach(function (e) { link(e.source, e.target); allEdges.push({ e: e, type: "token" }); });

    var pos = {};
    var tokenName = {};
    (graph.embed_tokens || []).concat(graph.unembed_tokens || []).forEach(function (t) {
      tokenName[t.id] = JSON.stringify(t.token);
    });
    function place(r) {
      var x = cx - span(r) / 2;
      r.nodes.forEach(function (node, i) { x += gapBefore(r, i); pos[node.name] = { x: x, y: r.y }; });
    }
    rows.forEach(place);
    function sweep(order) {
      order.forEach(function (r) {
        if (r.nodes.length < 2) return;
        var bary = {};
        r.nodes.forEach(function (node) {
          var xs = (nb[node.name] || []).filter(function (m) { return pos[m]; }).map(function (m) { return pos[m].x; });
          bary[node.name] = xs.length ? xs.reduce(function (a, b) { return a + b; }, 0) / xs.length : pos[node.name].x;
        });
        if (r.grouped) {  // heads move as blocks: a head sits at the mean of its channels
          var sum = {}, count = {};
          r.nodes.forEach(function (n) { sum[n.head] = (sum[n.head] || 0) + bary[n.name]; count[n.head] = (count[n.head] || 0) + 1; });
          r.nodes.sort(function (a, b) {
            return sum[a.head] / count[a.head] - sum[b.head] / count[b.head] || a.head - b.head ||
              QKV[a.kind] - QKV[b.kind] || bary[a.name] - bary[b.name] || a.channel - b.channel;
          });
        } else {
          r.nodes.sort(function (a, b) { return bary[a.name] - bary[b.name] || cmpArr(rowOrderKey(a), rowOrderKey(b)); });
        }
        place(r);
      });
    }
    var bottomUp = rows.slice().reverse();
    for (var it = 0; it < 4; it++) { sweep(bottomUp); sweep(rows); }
    sweep(bottomUp);

    container.classList.add("graph-host");
    var svg = el("svg", { width: "100%", height: "100%", class: "circuit", "data-width": width, "data-height": height }, container);
    var vp = el("g", { class: "viewport" }, svg);

    // bands: one per layer plus the two ends
    var bands = [];
    rows.forEach(function (r) {
      var last = bands[bands.length - 1];
      var id = r.kind === "end" ? r.key : "L" + r.layer;
      if (last && last.id === id) { last.bottom = r.top + r.height; last.rows.push(r); }
      else bands.push({ id: id, top: r.top, bottom: r.top + r.height, rows: [r], layer: r.layer, end: r.kind === "end" ? r.title : null });
    });
    var gb = el("g", { class: "bands" }, vp);
    bands.forEach(function (b) {
      el("rect", { x: 0, y: b.top, width: width, height: b.bottom - b.top,
        class: b.end ? "band band-end" : (b.layer % 2 ? "band band-odd" : "band band-even") }, gb);
      var t;
      if (b.end) {
        t = el("text", { x: 10, y: b.top + 16, class: "band-label" }, gb);
      } else {  // written upwards along the band's left edge, clear of the row labels
        var my = (b.top + b.bottom) / 2;
        t = el("text", { x: 16, y: my, "text-anchor": "middle", transform: "rotate(-90 16 " + my + ")", class: "band-label" }, gb);
      }
      t.textContent = b.end ? b.end : "layer " + b.layer;
      b.rows.forEach(function (r) {
        if (r.kind !== "row") return;
        var rt = el("text", { x: 30, y: r.y - 2, class: "row-label" }, gb);
        rt.textContent = graph.row_titles[r.row] || r.row;
        var rl = el("text", { x: 30, y: r.y + 11, class: "row-loc" }, gb);
        rl.textContent = r.layer + "." + (r.grouped ? r.row.slice(0, -4) + ".q/k/v" : r.row);
      });
      if (b.end === "embedding") {
        var et = el("text", { x: 10, y: b.top + 32, class: "end-note" }, gb);
        var nt = (graph.embed_tokens || []).length;
        et.textContent = nt ? "task tokens" : "tokens \u2192 residual";
        if (nt && graph.embed_note) {
          var en = el("title", {}, et);
          en.textContent = graph.embed_note;
          var e2 = el("text", { x: 10, y: b.top + 45, class: "end-note" }, gb);
          e2.textContent = "(" + graph.embed_note + ")";
        }
      }
      if (b.end === "unembedding") {
        var ut = el("text", { x: 10, y: b.top + 32, class: "end-note" }, gb);
        ut.textContent = (graph.unembed_tokens || []).length ? "candidate tokens" : "residual \u2192 logits";
      }
    });

    // head boxes behind the q/k/v channels of one head
    var gh = el("g", { class: "heads" }, vp);
    rows.forEach(function (r) {
      if (!r.grouped) return;
      var groups = [];
      r.nodes.forEach(function (n) {
        var g = groups[groups.length - 1];
        if (g && g.head === n.head) { g.max = pos[n.name].x; g.n++; }
        else groups.push({ head: n.head, min: pos[n.name].x, max: pos[n.name].x, n: 1 });
      });
      groups.forEach(function (g) {
        var colour = HEAD_COLOURS[g.head % HEAD_COLOURS.length];
        var pad = Math.min(spacing / 2, 16) + 2;
        var box = el("g", { class: "head-group", "data-head": g.head }, gh);
        el("rect", { x: g.min - pad, y: r.y - 15, width: g.max - g.min + 2 * pad, height: 46, rx: 6,
          fill: colour, "fill-opacity": 0.07, stroke: colour, "stroke-opacity": 0.55, class: "head-box" }, box);
        var ht = el("text", { x: g.min - pad + 3, y: r.y - 18, class: "head-label", fill: colour }, box);
        ht.textContent = "head " + g.head;
      });
    });

    // edges
    var ge = el("g", { class: "edges" }, vp);
    var maxW = { edge: 0, token: 0 };
    allEdges.forEach(function (a) {
      if (a.type !== "residual" && a.e.weight !== null) maxW[a.type] = Math.max(maxW[a.type], Math.abs(a.e.weight));
    });
    var edgeEls = [];
    allEdges.forEach(function (a) {
      var e = a.e, p = pos[e.source], q = pos[e.target];
      if (!p || !q) return;
      var d;
      if (Math.abs(p.y - q.y) < 1) {
        var lift = 26 + Math.abs(p.x - q.x) / 8;
        d = "M" + p.x + " " + p.y + " C" + p.x + " " + (p.y - lift) + " " + q.x + " " + (q.y - lift) + " " + q.x + " " + q.y;
      } else {
        var my = (p.y + q.y) / 2;
        d = "M" + p.x + " " + p.y + " C" + p.x + " " + my + " " + q.x + " " + my + " " + q.x + " " + q.y;
      }
      var g = el("g", { class: "edge edge-" + a.type, "data-source": e.source, "data-target": e.target }, ge);
      var stroke, w;
      if (a.type === "residual") { stroke = "#9ca3af"; w = 1.3; }
      else {
        stroke = e.weight >= 0 ? POS : NEG;
        w = a.type === "token" ? 0.6 + 2.4 * (maxW.token ? Math.abs(e.weight) / maxW.token : 0)
          : 0.8 + 5.2 * (maxW[a.type] ? Math.abs(e.weight) / maxW[a.type] : 0);
      }
      el("path", { d: d, stroke: stroke, "stroke-width": w, fill: "none", class: "edge-line",
        "stroke-dasharray": a.type === "residual" ? "5 4" : a.type === "token" ? "2 3" : null }, g);
      el("path", { d: d, stroke: "transparent", "stroke-width": Math.max(9, w + 6), fill: "none", class: "edge-hit" }, g);
      var what = a.type === "residual" ? "residual link" : a.type === "token" ?
        (String(e.source).indexOf("embed.") === 0 ? "embedding row, channel " + e.channel : "unembedding row, channel " + e.channel) : "edge";
      var src = a.type === "token" && String(e.source).indexOf("embed.") === 0 ? tokenName[e.source] : e.source;
      var dst = a.type === "token" && String(e.target).indexOf("unembed.") === 0 ? tokenName[e.target] : e.target;
      var text = src + " \u2192 " + dst + "\n" + what + (a.type === "residual" && e.weight === null ? "" : "   weight " + fmt(e.weight));
      g.addEventListener("mouseenter", function (ev) { if (!panning()) { g.classList.add("hl"); tooltip.show(text, ev); } });
      g.addEventListener("mousemove", function (ev) { if (!panning()) tooltip.move(ev); });
      g.addEventListener("mouseleave", function () { g.classList.remove("hl"); tooltip.hide(); });
      a.g = g;
      edgeEls.push(g);
    });

    // nodes
    var gn = el("g", { class: "nodes" }, vp);
    var nodeEls = {};
    var labelEls = [];  // {el, node, name, x}: the label toggle rewrites them
    function focus(name, on) {
      svg.classList.toggle("focus", on);
      nodeEls[name].classList.toggle("hl", on);
      edgeEls.forEach(function (eg) {
        var s = eg.dataset.source, t = eg.dataset.target;
        var mine = s === name || t === name;
        eg.classList.toggle("hl", on && mine);
        if (mine && nodeEls[s === name ? t : s]) nodeEls[s === name ? t : s].classList.toggle("nb", on);
      });
    }
    rows.forEach(function (r) {
      r.nodes.forEach(function (n) {
        var p = pos[n.name];
        var g = el("g", { class: "node node-" + n.kind, "data-node": n.name, "data-head": n.head,
          tabindex: n.kind === "logit" ? null : 0 }, gn);
        nodeEls[n.name] = g;
        if (n.kind === "logit") {
          var shown = SC.tokText ? SC.tokText(n.token) : n.token;
          var tw = Math.max(28, shown.length * 7.5 + 16);
          el("rect", { x: p.x - tw / 2, y: p.y - 12, width: tw, height: 24, rx: 12, class: "logit-pill" }, g);
          var lt = el("text", { x: p.x, y: p.y + 4, "text-anchor": "middle", class: "logit-label" }, g);
          lt.textContent = shown;
          var ltip = JSON.stringify(n.token) + "\n" + (n.name.indexOf("embed.") === 0 ? "embedding row (token " : "candidate logit (token ") + n.name.split(".")[1] + ")";
          g.addEventListener("mouseenter", function (ev) { if (!panning()) { focus(n.name, true); tooltip.show(ltip, ev); } });
          g.addEventListener("mousemove", function (ev) { if (!panning()) tooltip.move(ev); });
          g.addEventListener("mouseleave", function () { focus(n.name, false); tooltip.hide(); });
          return;
        }
        // one transparent box over shape and label, so a click anywhere on either selects
        var label = compact ? String(n.index) : n.name;
        var hw = Math.max(10, (label.length * CHAR_W) / 2 + 4);
        el("rect", { x: p.x - hw, y: p.y - 12, width: 2 * hw, height: 40, fill: "transparent", class: "node-hit" }, g);
        shape(g, n.kind, p.x, p.y, 8);
        var t = el("text", { x: p.x, y: p.y + 23, "text-anchor": "middle", class: "node-label" }, g);
        t.textContent = label;
        labelEls.push({ el: t, node: n, name: label, x: p.x });
        var tip = n.name + "\n" + (KINDS[n.kind] ? KINDS[n.kind].title : n.kind) +
          (n.head !== undefined ? "   head " + n.head + ", channel " + n.channel : "") +
          explanationTip(n.explanation);
        // A click hides the tooltip: the panel it opens is the answer, and a tooltip left
        // standing would cover the neighbouring nodes.
        g.addEventListener("click", function () { tooltip.hide(); if (opts.onSelect) opts.onSelect(n.name); });
        g.addEventListener("keydown", function (ev) { if (ev.key === "Enter" && opts.onSelect) opts.onSelect(n.name); });
        g.addEventListener("mouseenter", function (ev) { if (!panning()) { focus(n.name, true); tooltip.show(tip, ev); } });
        g.addEventListener("mousemove", function (ev) { if (!panning()) tooltip.move(ev); });
        g.addEventListener("mouseleave", function () { focus(n.name, false); tooltip.hide(); });
      });
    });

    // Row names pinned to the pane's left edge, for when zooming has moved the band labels
    // out of view (a node's label is only its index then).
    var gs = el("g", { class: "sticky-rows" }, svg);
    var sticky = rows.filter(function (r) { return r.kind === "row"; }).map(function (r) {
      var t = el("text", { x: 6, class: "sticky-row" }, gs);
      t.textContent = r.layer + "." + (r.grouped ? r.row.slice(0, -4) + ".q/k/v" : r.row);
      return { el: t, y: r.y };
    });

    // ------------------------------------------------------------ pan and zoom
    var view = { s: 1, x: 0, y: 0 }, fitted = { s: 1 }, userMoved = false, drag = null, swallowClick = false;
    function apply() {
      vp.setAttribute("transform", "translate(" + view.x.toFixed(2) + " " + view.y.toFixed(2) + ") scale(" + view.s.toFixed(5) + ")");
      svg.setAttribute("data-scale", view.s.toFixed(5));
      gs.classList.toggle("on", view.x + (LEFT - 10) * view.s < 0);
      sticky.forEach(function (r) { r.el.setAttribute("y", (view.y + view.s * r.y + 4).toFixed(1)); });
    }
    function fit() {
      var W = container.clientWidth, H = container.clientHeight, m = 8;
      if (!W || !H || !svg.isConnected) return;  // hidden, or replaced by another circuit
      var top = Math.max(TOOLBAR_H, bar.offsetHeight + 4);  // a narrow pane wraps the toolbar
      var s = Math.min((W - 2 * m) / width, (H - top - m) / height, 1.25);
      view = { s: s, x: (W - width * s) / 2, y: top + Math.max(0, (H - top - m - height * s) / 2) };
      fitted = { s: s };
      userMoved = false;
      apply();
    }
    function zoomAt(px, py, factor) {
      var s2 = Math.max(fitted.s * 0.5, Math.min(Math.max(4, fitted.s * 4), view.s * factor));
      var f = s2 / view.s;
      view.x = px - (px - view.x) * f;
      view.y = py - (py - view.y) * f;
      view.s = s2;
      userMoved = true;
      apply();
    }
    function panning() { return !!(drag && drag.moved); }
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      tooltip.hide();
      var r = svg.getBoundingClientRect();
      var dy = ev.deltaY * (ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? 400 : 1);
      zoomAt(ev.clientX - r.left, ev.clientY - r.top, Math.exp(-dy * 0.0015));
    }, { passive: false });
    svg.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
    });
    svg.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!drag.moved) {
        if (dx * dx + dy * dy < 16) return;  // a click that shook a little is still a click
        drag.moved = true;
        svg.setPointerCapture(ev.pointerId);
        svg.classList.add("panning");
        tooltip.hide();
      }
      view.x = drag.vx + dx;
      view.y = drag.vy + dy;
      userMoved = true;
      apply();
    });
    function endDrag() {
      if (drag && drag.moved) { swallowClick = true; setTimeout(function () { swallowClick = false; }, 0); }
      svg.classList.remove("panning");
      drag = null;
    }
    svg.addEventListener("pointerup", endDrag);
    svg.addEventListener("pointercancel", endDrag);
    // The click that ends a drag must not select the node the drag started on.
    svg.addEventListener("click", function (ev) { if (swallowClick) { ev.stopPropagation(); ev.preventDefault(); } }, true);

    // ------------------------------------------------------------ toolbar
    var bar = document.createElement("div");
    bar.className = "graph-tools" + (explained.length ? " has-explanations" : "");
    var nCircuit = allEdges.filter(function (a) { return a.type === "edge"; }).length;
    var limits = EDGE_LIMITS.filter(function (n) { return n < nCircuit; });
    var defaultLimit = limits.length ? limits.filter(function (n) { return n >= Math.min(graph.nodes.length, 100); })[0] || limits[limits.length - 1] : null;
    bar.innerHTML = (explained.length ?
      '<label title="Label nodes with their names or with their cached explanations (sparsecircuits explain)">labels ' +
      '<select class="label-mode"><option value="names">names</option><option value="explanations">explanations</option></select></label>' +
      '<input class="explain-search" type="search" spellcheck="false" placeholder="search explanations" ' +
      'title="Highlight the nodes whose explanation contains this text (' + explained.length + " of " + graph.nodes.length +
      ' nodes have one)">' : "") +
      '<label title="Which circuit edges are drawn; hover a node to see all of its edges">edges ' +
      '<select class="edge-limit">' + limits.map(function (n) {
        return '<option value="' + n + '"' + (n === defaultLimit ? " selected" : "") + ">strongest " + n + " + each node's strongest</option>";
      }).join("") + '<option value="all"' + (defaultLimit === null ? " selected" : "") + ">all " + nCircuit + "</option></select></label>" +
      '<span class="edge-count"></span>' +
      '<button type="button" class="zoom-out" title="zoom out">\u2212</button>' +
      '<button type="button" class="zoom-in" title="zoom in (or use the wheel)">+</button>' +
      '<button type="button" class="zoom-fit" title="fit the whole circuit in the pane">fit</button>' +
      '<span class="graph-hint">wheel: zoom \u00b7 drag: pan</span>';
    container.appendChild(bar);
    function centre(factor) { zoomAt(container.clientWidth / 2, container.clientHeight / 2, factor); }
    bar.querySelector(".zoom-in").addEventListener("click", function () { centre(1.4); });
    bar.querySelector(".zoom-out").addEventListener("click", function () { centre(1 / 1.4); });
    bar.querySelector(".zoom-fit").addEventListener("click", fit);
    var limitSel = bar.querySelector(".edge-limit");
    function limitEdges(limit) {
      var show = visibleEdges(allEdges.filter(function (a) { return a.g; }), limit);
      var n = 0;
      allEdges.forEach(function (a) {
        if (!a.g) return;
        var on = show.has(a);
        a.g.classList.toggle("filtered", !on);
        if (on && a.type === "edge") n++;
      });
      bar.querySelector(".edge-count").textContent = n + " of " + nCircuit + " drawn";
    }
    limitSel.addEventListener("change", function () { limitEdges(this.value === "all" ? null : +this.value); });
    limitEdges(defaultLimit);

    // ------------------------------------------------------------ explanations
    function setLabels(mode) {
      var chars = Math.max(6, Math.floor((spacing - 8) / EXPL_CHAR_W));
      labelEls.forEach(function (L) {
        var ex = L.node.explanation, show = mode === "explanations" && ex && ex.status === "ok";
        while (L.el.firstChild) L.el.removeChild(L.el.firstChild);
        L.el.classList.toggle("expl-label", !!show);
        L.el.classList.toggle("no-expl", mode === "explanations" && !show);
        if (!show) { L.el.textContent = L.name; return; }
        wrapText(shortExplanation(ex.text), chars, EXPL_LINES).forEach(function (line, i) {
          el("tspan", { x: L.x, dy: i ? 10 : 0 }, L.el).textContent = line;
        });
      });
      svg.setAttribute("data-labels", mode);
    }
    var results = null;
    function search(query) {
      var q = query.trim().toLowerCase();
      var hits = q ? explained.filter(function (n) { return n.explanation.text.toLowerCase().indexOf(q) >= 0; }) : [];
      svg.classList.toggle("searching", !!q);
      Object.keys(nodeEls).forEach(function (k) { nodeEls[k].classList.remove("search-hit"); });
      hits.forEach(function (n) { nodeEls[n.name].classList.add("search-hit"); });
      if (!q) { if (results) results.hidden = true; return hits; }
      if (!results) {
        results = document.createElement("div");
        results.className = "search-results";
        container.appendChild(results);
      }
      results.hidden = false;
      results.style.top = bar.offsetHeight + 2 + "px";
      SC.fillSearchResults(results,
        hits.length + " node" + (hits.length === 1 ? "" : "s") + " whose explanation contains \u201c" + escHTML(query.trim()) + "\u201d",
        "node", hits.map(function (n) { return { value: n.name, text: n.explanation.text }; }),
        function (hit) { if (opts.onSelect) opts.onSelect(hit.value); },
        function () { bar.querySelector(".explain-search").value = ""; search(""); });
      return hits;
    }
    var self = opts.handle || {};
    var selected = opts.selected || null;
    /* Draw the graph again laid out for the other labels, keeping selection and search; the
     * object the caller holds stays valid (its methods now act on the new drawing). */
    function relayout(mode) {
      var query = bar.querySelector(".explain-search").value;
      SC.renderGraph(container, graph, Object.assign({}, opts, { labels: mode, handle: self, selected: selected, query: query }));
    }
    if (explained.length) {
      bar.querySelector(".label-mode").value = labelMode;
      bar.querySelector(".label-mode").addEventListener("change", function () { relayout(this.value); });
      bar.querySelector(".explain-search").addEventListener("input", function () { search(this.value); });
      setLabels(labelMode);
      if (opts.query) { bar.querySelector(".explain-search").value = opts.query; search(opts.query); }
    }

    fit();
    var observer = null;
    if (window.ResizeObserver) {  // a pane that changes size refits, unless the user has moved
      observer = new ResizeObserver(function () { if (!userMoved) fit(); });
      observer.observe(container);
    }
    container._scCleanup = function () { if (observer) observer.disconnect(); container.classList.remove("graph-host"); };

    function select(name) {
      selected = name;
      Object.keys(nodeEls).forEach(function (k) { nodeEls[k].classList.toggle("selected", k === name); });
    }
    if (selected) select(selected);
    return Object.assign(self, {
      select: select,
      labels: function () { return labelMode; },
      fit: fit,
      zoom: centre,
      view: function () { return { scale: view.s, x: view.x, y: view.y, fitted: fitted.s }; },
      limitEdges: limitEdges,
      setLabels: function (mode) { if (mode !== labelMode) relayout(mode); },
      search: search,
      positions: pos,
      size: { width: width, height: height },
    });
  };

  SC.legendHTML = function () {
    function item(kind) {
      var st = KINDS[kind];
      var svg = '<svg width="18" height="18" viewBox="0 0 22 22">';
      if (st.shape === "circle") svg += '<circle cx="11" cy="11" r="7"';
      else if (st.shape === "square") svg += '<rect x="4" y="4" width="14" height="14" rx="2"';
      else svg += '<polygon points="11,2 20,11 11,20 2,11"';
      svg += ' fill="' + st.fill + '" stroke="' + st.stroke + '" stroke-width="1.5"/></svg>';
      return '<span class="legend-item" title="' + st.title + '">' + svg + st.short + "</span>";
    }
    function line(color, dash, label, w) {
      return '<span class="legend-item"><svg width="20" height="12"><line x1="1" y1="6" x2="19" y2="6" stroke="' +
        color + '" stroke-width="' + (w || 3) + '"' + (dash ? ' stroke-dasharray="' + dash + '"' : "") +
        "/></svg>" + label + "</span>";
    }
    return ["neuron", "resid_read", "resid_write", "q", "k", "v"].map(item).join("") +
      '<span class="legend-item" title="the q/k/v channels of one attention head (channel index = head \u00d7 d_head + channel)">' +
      '<svg width="22" height="14"><rect x="1" y="1" width="20" height="12" rx="3" fill="#2563eb" fill-opacity=".08" stroke="#2563eb" stroke-opacity=".55"/></svg>head</span>' +
      line(POS, null, "+ weight") + line(NEG, null, "\u2212 weight") +
      line("#9ca3af", "5 4", "residual link", 1.5) + line("#6b7280", "2 3", "token row") +
      '<span class="legend-item legend-note" title="edge width is proportional to |weight|">width \u221d |w|</span>';
  };
})();
