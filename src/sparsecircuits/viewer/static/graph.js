/* Circuit graph in SVG: layer bands from the embedding (bottom) to the unembedding (top).
 *
 * Inside a layer the rows follow the flow through the block (attn read, q/k/v, attn write,
 * mlp read, mlp neurons, mlp write). Node order inside a row is chosen by a few barycentre
 * sweeps so edges cross less. Edges: blue = positive weight, red = negative, width ~ |weight|;
 * dashed grey = residual-stream link; dotted = direct logit effect on a candidate token.
 * Shared by the live app and the single-file report: no dependencies, no network.
 */
(function () {
  "use strict";
  var SC = (window.SC = window.SC || {});
  var NS = "http://www.w3.org/2000/svg";

  var POS = "#2563eb";
  var NEG = "#dc2626";
  var KINDS = {
    resid_read: { shape: "square", fill: "#ffffff", stroke: "#4b5563", title: "residual read (act_in)" },
    resid_write: { shape: "square", fill: "#6b7280", stroke: "#374151", title: "residual write (resid_delta)" },
    q: { shape: "diamond", fill: "#f59e0b", stroke: "#92400e", letter: "q", title: "query channel" },
    k: { shape: "diamond", fill: "#10b981", stroke: "#065f46", letter: "k", title: "key channel" },
    v: { shape: "diamond", fill: "#a78bfa", stroke: "#5b21b6", letter: "v", title: "value channel" },
    neuron: { shape: "circle", fill: "#0f766e", stroke: "#134e4a", title: "MLP neuron (post_act)" },
  };
  var ROW_H = 66, EMPTY_H = 30, END_H = 58, LEFT = 150, RIGHT = 30, TOP = 8;
  var CHAR_W = 6.4; // monospace 10.5px

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

  function fmt(w) {
    if (w === null || w === undefined) return "(no weight)";
    var a = Math.abs(w);
    return a !== 0 && (a < 1e-3 || a >= 1e4) ? w.toExponential(3) : w.toFixed(4);
  }
  SC.fmt = fmt;

  function rowOrderKey(n) {
    var qkv = { q: 0, k: 1, v: 2 };
    if (n.kind in qkv) return [n.head, qkv[n.kind], n.channel];
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
          rows.push({ key: key, kind: "row", layer: L, row: graph.rows[i], nodes: nodes });
        }
      }
      if (!any) rows.push({ key: L + ":empty", kind: "empty", layer: L, nodes: [] });
    }
    rows.push({ key: "embed", kind: "end", title: "embedding", nodes: [] });
    return rows;
  }

  SC.renderGraph = function (container, graph, opts) {
    opts = opts || {};
    container.innerHTML = "";
    var rows = buildRows(graph);
    function pills(list) { return (list || []).map(function (c) { return { name: c.id, token: c.token, kind: "logit" }; }); }
    rows[0].nodes = pills(graph.unembed_tokens);
    rows[rows.length - 1].nodes = pills(graph.embed_tokens);

    var maxLabel = 8;
    graph.nodes.forEach(function (n) { maxLabel = Math.max(maxLabel, n.name.length); });
    var spacing = Math.max(96, maxLabel * CHAR_W + 18);
    var TOKEN_SPACING = 64;
    var maxCount = 1, maxTokens = 1;
    rows.forEach(function (r) {
      if (r.kind === "end") maxTokens = Math.max(maxTokens, r.nodes.length);
      else maxCount = Math.max(maxCount, r.nodes.length);
    });
    // A wide circuit does not fit full names side by side: label each node with its index
    // (the row label carries the location) and pack the nodes closer.
    var avail = Math.max(400, (container.clientWidth || 1000) - LEFT - RIGHT);
    var compact = maxCount * spacing > avail;
    if (compact) {
      var maxIdx = 3;
      graph.nodes.forEach(function (n) { maxIdx = Math.max(maxIdx, String(n.index).length); });
      spacing = Math.max(maxIdx * CHAR_W + 14, Math.min(spacing, avail / maxCount));
    }
    var inner = Math.max(maxCount * spacing, maxTokens * TOKEN_SPACING);
    var width = LEFT + inner + RIGHT;
    var cx = LEFT + inner / 2;

    // y of every row
    var y = TOP;
    rows.forEach(function (r) {
      var h = r.kind === "row" ? ROW_H : r.kind === "empty" ? EMPTY_H : END_H;
      r.top = y; r.height = h; r.y = y + h / 2 - (r.kind === "row" ? 8 : 0);
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
      var n = r.nodes.length, gap = r.kind === "end" ? TOKEN_SPACING : spacing;
      r.nodes.forEach(function (node, i) { pos[node.name] = { x: cx + (i - (n - 1) / 2) * gap, y: r.y }; });
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
        r.nodes.sort(function (a, b) { return bary[a.name] - bary[b.name] || cmpArr(rowOrderKey(a), rowOrderKey(b)); });
        place(r);
      });
    }
    var bottomUp = rows.slice().reverse();
    for (var it = 0; it < 4; it++) { sweep(bottomUp); sweep(rows); }
    sweep(bottomUp);

    var svg = el("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, class: "circuit" }, container);

    // bands: one per layer plus the two ends
    var bands = [];
    rows.forEach(function (r) {
      var last = bands[bands.length - 1];
      var id = r.kind === "end" ? r.key : "L" + r.layer;
      if (last && last.id === id) { last.bottom = r.top + r.height; last.rows.push(r); }
      else bands.push({ id: id, top: r.top, bottom: r.top + r.height, rows: [r], layer: r.layer, end: r.kind === "end" ? r.title : null });
    });
    var gb = el("g", { class: "bands" }, svg);
    bands.forEach(function (b, i) {
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
        rl.textContent = r.layer + "." + (r.row.slice(-4) === ".qkv" ? r.row.slice(0, -4) + ".q/k/v" : r.row);
      });
      if (b.end === "embedding") {
        var et = el("text", { x: 10, y: b.top + 32, class: "end-note" }, gb);
        var nt = (graph.embed_tokens || []).length;
        et.textContent = nt ? (graph.embed_tokens_hidden ? nt + " strongest of " + (nt + graph.embed_tokens_hidden) + " task tokens" : "task tokens") : "tokens \u2192 residual";
      }
      if (b.end === "unembedding") {
        var ut = el("text", { x: 10, y: b.top + 32, class: "end-note" }, gb);
        ut.textContent = (graph.unembed_tokens || []).length ? "candidate tokens" : "residual \u2192 logits";
      }
    });

    // edges
    var ge = el("g", { class: "edges" }, svg);
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
      g.dataset.strength = a.type === "residual" || !maxW[a.type] ? 1 : Math.abs(e.weight) / maxW[a.type];
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
      g.addEventListener("mouseenter", function (ev) { g.classList.add("hl"); if (opts.tooltip) opts.tooltip.show(text, ev); });
      g.addEventListener("mousemove", function (ev) { if (opts.tooltip) opts.tooltip.move(ev); });
      g.addEventListener("mouseleave", function () { g.classList.remove("hl"); if (opts.tooltip) opts.tooltip.hide(); });
      edgeEls.push(g);
    });

    // nodes
    var gn = el("g", { class: "nodes" }, svg);
    var nodeEls = {};
    rows.forEach(function (r) {
      r.nodes.forEach(function (n) {
        var p = pos[n.name];
        var g = el("g", { class: "node node-" + n.kind, "data-node": n.name, tabindex: n.kind === "logit" ? null : 0 }, gn);
        if (n.kind === "logit") {
          var shown = SC.tokText ? SC.tokText(n.token) : n.token;
          var tw = Math.max(28, shown.length * 7.5 + 16);
          el("rect", { x: p.x - tw / 2, y: p.y - 12, width: tw, height: 24, rx: 12, class: "logit-pill" }, g);
          var lt = el("text", { x: p.x, y: p.y + 4, "text-anchor": "middle", class: "logit-label" }, g);
          lt.textContent = shown;
        } else {
          // one transparent box over shape and label, so a click anywhere on either selects
          var label = compact ? String(n.index) : n.name;
          var hw = Math.max(10, (label.length * CHAR_W) / 2 + 4);
          el("rect", { x: p.x - hw, y: p.y - 12, width: 2 * hw, height: 42, fill: "transparent", class: "node-hit" }, g);
          shape(g, n.kind, p.x, p.y, 8);
          var t = el("text", { x: p.x, y: p.y + 24, "text-anchor": "middle", class: "node-label" }, g);
          t.textContent = label;
          var tip = n.name + "\n" + (KINDS[n.kind] ? KINDS[n.kind].title : n.kind) +
            (n.head !== undefined ? "   head " + n.head + ", channel " + n.channel : "");
          g.addEventListener("click", function () { if (opts.onSelect) opts.onSelect(n.name); });
          g.addEventListener("keydown", function (ev) { if (ev.key === "Enter" && opts.onSelect) opts.onSelect(n.name); });
          g.addEventListener("mouseenter", function (ev) {
            svg.classList.add("focus");
            g.classList.add("hl");
            edgeEls.forEach(function (eg) {
              if (eg.dataset.source === n.name || eg.dataset.target === n.name) eg.classList.add("hl");
            });
            if (opts.tooltip) opts.tooltip.show(tip, ev);
          });
          g.addEventListener("mousemove", function (ev) { if (opts.tooltip) opts.tooltip.move(ev); });
          g.addEventListener("mouseleave", function () {
            svg.classList.remove("focus");
            g.classList.remove("hl");
            edgeEls.forEach(function (eg) { eg.classList.remove("hl"); });
            if (opts.tooltip) opts.tooltip.hide();
          });
        }
        nodeEls[n.name] = g;
      });
    });

    return {
      /* Hide edges whose |weight| is below `fraction` of the largest of their kind. */
      threshold: function (fraction) {
        edgeEls.forEach(function (eg) { eg.style.display = +eg.dataset.strength < fraction ? "none" : ""; });
      },
      select: function (name) {
        Object.keys(nodeEls).forEach(function (k) { nodeEls[k].classList.toggle("selected", k === name); });
      },
      positions: pos,
    };
  };

  SC.legendHTML = function () {
    function item(kind) {
      var st = KINDS[kind];
      var svg = '<svg width="22" height="22" viewBox="0 0 22 22">';
      if (st.shape === "circle") svg += '<circle cx="11" cy="11" r="7"';
      else if (st.shape === "square") svg += '<rect x="4" y="4" width="14" height="14" rx="2"';
      else svg += '<polygon points="11,2 20,11 11,20 2,11"';
      svg += ' fill="' + st.fill + '" stroke="' + st.stroke + '" stroke-width="1.5"/></svg>';
      return '<span class="legend-item">' + svg + st.title + "</span>";
    }
    function line(color, dash, label, w) {
      return '<span class="legend-item"><svg width="30" height="12"><line x1="2" y1="6" x2="28" y2="6" stroke="' +
        color + '" stroke-width="' + (w || 3) + '"' + (dash ? ' stroke-dasharray="' + dash + '"' : "") +
        "/></svg>" + label + "</span>";
    }
    return ["neuron", "resid_read", "resid_write", "q", "k", "v"].map(item).join("") +
      line(POS, null, "positive weight") + line(NEG, null, "negative weight") +
      line("#9ca3af", "5 4", "residual link", 1.5) + line("#6b7280", "2 3", "token (un)embedding") +
      '<span class="legend-item legend-note">edge width \u221d |weight|</span>';
  };
})();
