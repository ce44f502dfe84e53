/* The viewer's front end: pickers, circuit graph, node panel, interventions, text view, steering.
 *
 * Live mode talks to the JSON API of `sparsecircuits serve`. Static mode (the single-file
 * report) finds everything precomputed in <script id="sc-data" type="application/json">:
 * the graph, a panel per circuit node and each node's mean/zero ablation result.
 */
(function () {
  "use strict";
  var SC = window.SC;
  var $ = function (id) { return document.getElementById(id); };
  var dataEl = document.getElementById("sc-data");
  var STATIC = dataEl ? JSON.parse(dataEl.textContent) : null;

  var S = {
    model: null, task: null, circuit: null, node: null,
    interventions: [], graph: null, artifacts: null, tasks: [], view: null, mode: "model",
  };

  // ---------------------------------------------------------------- helpers
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(x, digits) {
    if (x === null || x === undefined || (typeof x === "number" && isNaN(x))) return "\u2013";
    if (typeof x !== "number") return esc(x);
    var a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
    return x.toFixed(digits === undefined ? 4 : digits);
  }
  function status(msg, isError) {
    var s = $("status");
    s.textContent = msg || "";
    s.className = isError ? "error" : "";
  }
  function api(path, params, body) {
    var url = path;
    if (params) {
      var q = Object.keys(params).filter(function (k) { return params[k] !== null && params[k] !== undefined && params[k] !== ""; })
        .map(function (k) { return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]); }).join("&");
      if (q) url += "?" + q;
    }
    var init = body ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) } : {};
    return fetch(url, init).then(function (r) {
      return r.json().catch(function () { return { error: "HTTP " + r.status }; }).then(function (j) {
        if (!r.ok) { var e = new Error(j.error || "HTTP " + r.status); e.status = r.status; throw e; }
        return j;
      });
    });
  }
  function target() {
    return S.circuit ? { circuit: S.circuit } : { model: S.model };
  }

  // ---------------------------------------------------------------- tooltip
  var tooltip = {
    show: function (text, ev) { var t = $("tooltip"); t.textContent = text; t.style.display = "block"; this.move(ev); },
    move: function (ev) {
      var t = $("tooltip");
      t.style.left = Math.min(ev.clientX + 14, window.innerWidth - t.offsetWidth - 8) + "px";
      t.style.top = ev.clientY + 14 + "px";
    },
    hide: function () { $("tooltip").style.display = "none"; },
  };

  // ---------------------------------------------------------------- tokens
  function colour(a, scale) {
    if (!scale || !a) return "transparent";
    var x = Math.max(-1, Math.min(1, a / scale));
    var alpha = (0.08 + 0.82 * Math.pow(Math.abs(x), 0.8)).toFixed(3);
    return x > 0 ? "rgba(249,115,22," + alpha + ")" : "rgba(14,165,233," + alpha + ")";
  }
  function showTok(t, keepNewlines) {
    var s = t.replace(/\t/g, "\u2192   ");
    if (keepNewlines) return s.replace(/\n/g, "\u21b5\n");
    return s.replace(/\n/g, "\u21b5");
  }
  /* A token as text with its whitespace visible: a leading space as ␣, newline as ↵. */
  function tokText(t) {
    return t.replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192").replace(/^ /, "\u2423");
  }
  SC.tokText = tokText;
  function tokCode(t) { return '<code class="tokc">' + esc(tokText(t)) + "</code>"; }
  function fmtP(p) {
    if (p === null || p === undefined) return "\u2013";
    return p >= 0.01 || p === 0 ? p.toFixed(2) : p.toExponential(0);
  }

  function tokensHTML(tokens, acts, scale, focus, keepNewlines) {
    return tokens.map(function (t, i) {
      var cls = "tok" + (i === focus ? " focus" : "");
      return '<span class="' + cls + '" style="background:' + colour(acts[i], scale) + '" title="' +
        esc(JSON.stringify(t) + "  " + num(acts[i])) + '">' + esc(showTok(t, keepNewlines)) + "</span>";
    }).join("");
  }

  // ---------------------------------------------------------------- small charts
  function histogramSVG(h) {
    if (!h.counts.length) return '<p class="hint">Never nonzero on the scanned tokens.</p>';
    var W = 480, H = 90, pad = 22, n = h.counts.length;
    var max = Math.max.apply(null, h.counts) || 1;
    var bw = (W - 2 * pad) / n;
    var lo = h.edges[0], hi = h.edges[n];
    var out = '<svg class="hist" width="' + W + '" height="' + (H + 18) + '">';
    h.counts.forEach(function (c, i) {
      var bh = (H - 10) * Math.sqrt(c / max);
      var mid = (h.edges[i] + h.edges[i + 1]) / 2;
      out += '<rect x="' + (pad + i * bw + 0.5) + '" y="' + (H - bh) + '" width="' + Math.max(1, bw - 1) + '" height="' + bh +
        '" fill="' + (mid >= 0 ? "#f97316" : "#0ea5e9") + '"><title>' + num(h.edges[i]) + " .. " + num(h.edges[i + 1]) + ": " + c + "</title></rect>";
    });
    out += '<line x1="' + pad + '" y1="' + H + '" x2="' + (W - pad) + '" y2="' + H + '" stroke="#888"/>';
    if (lo < 0 && hi > 0) {
      var zx = pad + ((0 - lo) / (hi - lo)) * (W - 2 * pad);
      out += '<line x1="' + zx + '" y1="0" x2="' + zx + '" y2="' + H + '" stroke="#444" stroke-dasharray="2 2"/>';
    }
    out += '<text x="' + pad + '" y="' + (H + 14) + '" class="axis">' + num(lo, 3) + "</text>";
    out += '<text x="' + (W - pad) + '" y="' + (H + 14) + '" text-anchor="end" class="axis">' + num(hi, 3) + "</text>";
    out += "</svg>";
    var zeroPct = (100 * h.zeros / h.total).toFixed(1);
    return out + '<p class="note">' + h.total + " tokens; " + zeroPct + "% exactly zero (AbsTopK), not drawn; bar height \u221d \u221acount.</p>";
  }
  function stripSVG(values, lo, hi, color) {
    var W = 220, H = 34;
    var span = hi - lo || 1;
    var out = '<svg class="strip" width="' + W + '" height="' + H + '">';
    out += '<line x1="4" y1="' + (H / 2) + '" x2="' + (W - 4) + '" y2="' + (H / 2) + '" stroke="#ccc"/>';
    if (lo < 0 && hi > 0) {
      var zx = 4 + ((0 - lo) / span) * (W - 8);
      out += '<line x1="' + zx + '" y1="3" x2="' + zx + '" y2="' + (H - 3) + '" stroke="#999" stroke-dasharray="2 2"/>';
    }
    values.forEach(function (v, i) {
      var x = 4 + ((v - lo) / span) * (W - 8);
      var y = H / 2 + (((i * 7919) % 17) - 8) * 0.9;
      out += '<circle cx="' + x.toFixed(1) + '" cy="' + y.toFixed(1) + '" r="3" fill="' + color + '" fill-opacity="0.6"><title>' + num(v) + "</title></circle>";
    });
    return out + "</svg>";
  }

  // ---------------------------------------------------------------- node panel
  function snippetsHTML(list, scale, title, emptyNote) {
    var out = "<h3>" + title + "</h3>";
    if (!list.length) return out + '<p class="hint">' + emptyNote + "</p>";
    out += '<div class="snippets">';
    list.forEach(function (s) {
      out += '<div class="snippet"><span class="snip-value">' + num(s.value, 3) + '</span><span class="snip-text">' +
        tokensHTML(s.tokens, s.acts, scale, s.focus, false) + "</span></div>";
    });
    return out + "</div>";
  }

  function taskHTML(p) {
    if (!p.task) return p.task_error ? '<h3>Task examples</h3><p class="hint">' + esc(p.task_error) + "</p>" : "";
    var all = [];
    p.task.classes.forEach(function (c) { all = all.concat(c.values); });
    var lo = Math.min.apply(null, all.concat([0])), hi = Math.max.apply(null, all.concat([0]));
    var colours = ["#7c3aed", "#db2777"];
    var scale = Math.max(Math.abs(lo), Math.abs(hi), p.corpus.scale) || 1;
    var out = "<h3>On task examples (" + esc(p.task.name) + ", val, value at the choice position)</h3><div class=\"classes\">";
    p.task.classes.forEach(function (c, i) {
      out += '<div class="class-col"><div class="class-name" style="color:' + colours[i] + '">' + esc(c.name) +
        "</div><div>mean " + num(c.mean, 3) + " over " + c.values.length + "</div>" + stripSVG(c.values, lo, hi, colours[i]);
      c.examples.forEach(function (ex) {
        out += '<div class="example">' + tokensHTML(ex.tokens, ex.acts, scale, ex.focus, false) +
          '<span class="cand">\u2192 ' + tokCode(ex.correct) + "</span></div>";
      });
      out += "</div>";
    });
    return out + "</div>";
  }

  function logitHTML(le) {
    var out = "<h3>Direct logit effect</h3>";
    if (!le.direct) return out + '<p class="hint">' + esc(le.note) + "</p>";
    function list(items) {
      return "<ol>" + items.map(function (t) {
        return "<li>" + tokCode(t.token) + " " + num(t.value, 3) + "</li>";
      }).join("") + "</ol>";
    }
    out += '<p class="note">' + esc(le.note) + "</p>";
    if (le.candidates && le.candidates.length) {
      out += '<p>task candidates: ' + le.candidates.map(function (c) {
        return tokCode(c.token) + " " + num(c.value, 3);
      }).join(", ") + "</p>";
    }
    return out + '<div class="updown"><div><b>pushes up</b>' + list(le.up) + "</div><div><b>pushes down</b>" + list(le.down) + "</div></div>";
  }

  function actionsHTML(p) {
    if (STATIC) {
      return '<div class="actions"><button data-op="ablate_mean">mean-ablate</button>' +
        '<button data-op="ablate_zero">zero-ablate</button><span class="note">precomputed on the task\'s val examples</span></div>';
    }
    return '<div class="actions">' +
      '<button data-op="ablate_mean" title="replace by its mean activation">mean-ablate</button>' +
      '<button data-op="ablate_zero">zero-ablate</button>' +
      '<span class="op-group"><button data-op="clamp">clamp to</button><input id="op-clamp" type="number" step="any" value="' + num(p.corpus.scale, 3) + '"></span>' +
      '<span class="op-group"><button data-op="scale">scale by</button><input id="op-scale" type="number" step="any" value="-1"></span>' +
      "</div>";
  }

  /* A unit's cached explanation and its score under its name (nothing when it has none). */
  function explanationHTML(ex) {
    if (!ex) return "";
    if (ex.status !== "ok") {
      return '<p class="explanation expl-none">no explanation: not clearly active on held-out text (' + esc(ex.explainer) + ")</p>";
    }
    var text = esc(ex.text).replace(/`([^`]+)`/g, "<code>$1</code>");
    var good = typeof ex.detection === "number" && ex.detection >= 0.8;
    var parts = ['<span class="expl-det' + (good ? " good" : "") + '" title="detection: balanced accuracy of telling held-out ' +
      'contexts where the unit fires from ones where it does not, using the explanation (0.5 = chance)">detection ' + num(ex.detection, 2) + "</span>"];
    if (ex.correlation !== null && ex.correlation !== undefined) {
      parts.push('<span title="correlation of the explanation with the activation on held-out tokens">corr ' + num(ex.correlation, 2) + "</span>");
    }
    if (ex.fuzzing !== null && ex.fuzzing !== undefined) parts.push("<span>fuzzing " + num(ex.fuzzing, 2) + "</span>");
    parts.push('<span class="expl-by">' + esc(ex.explainer) + "</span>");
    return '<p class="explanation"><span class="expl-text">' + text + '</span><span class="expl-score">' + parts.join(" \u00b7 ") + "</span></p>";
  }

  function circuitMetaHTML(p) {
    var m = p.circuit_meta;
    if (!m) return "";
    var keys = Object.keys(m).filter(function (k) { return ["location", "index", "layer", "kind"].indexOf(k) < 0; });
    if (!keys.length) return "";
    return '<p class="meta">in the circuit: ' + keys.map(function (k) {
      return esc(k.replace(/_/g, " ")) + " " + (typeof m[k] === "number" ? num(m[k]) : esc(m[k]));
    }).join(" \u00b7 ") + "</p>";
  }

  function renderNodePanel(p) {
    var c = p.corpus;
    var where = p.head !== undefined ? " \u00b7 head " + p.head + ", channel " + p.channel : "";
    var html = '<div class="node-head"><span class="node-name">' + esc(p.name) + '</span><span class="badge badge-' + p.kind + '">' +
      esc(p.kind.replace("_", " ")) + "</span></div>" + explanationHTML(p.explanation) +
      '<p class="meta">layer ' + p.layer + " \u00b7 " + esc(p.location) + where + "</p>" + circuitMetaHTML(p) + actionsHTML(p) +
      '<p id="node-effect" class="node-effect"></p>' +
      '<p class="stats">mean <b class="node-mean">' + num(c.mean) + "</b> over " + c.tokens + " pretraining tokens (" + c.windows +
      " val windows) \u00b7 active on " + num(100 * c.active_fraction, 1) + "% \u00b7 max |act| " + num(c.scale, 3) +
      "<br>ablation mean " + num(p.ablation_mean) + ' <span class="note">(' + esc(p.ablation_mean_source) + ")</span></p>" +
      "<h3>Activation histogram</h3>" + histogramSVG(c.histogram) +
      snippetsHTML(c.top, c.scale, "Top-activating snippets", "Never positive on the scanned tokens.") +
      snippetsHTML(c.bottom, c.scale, "Bottom-activating snippets", "Never negative on the scanned tokens.") +
      taskHTML(p) + logitHTML(p.logit_effect);
    var body = $("node-body");
    body.innerHTML = html;
    body.querySelectorAll(".actions button").forEach(function (b) {
      b.addEventListener("click", function () { addIntervention(p.name, b.dataset.op); });
    });
    if (S.lastResult) showEffect(S.lastResult);
  }

  /* One line in the node panel: what the current interventions do to the task loss. */
  function showEffect(r) {
    var e = $("node-effect");
    if (!e) return;
    if (!r.interventions.length) { e.innerHTML = ""; return; }
    var d = r.intervened.task_loss - r.baseline.task_loss;
    e.innerHTML = r.interventions.map(function (iv) { return "<code>" + esc(iv.node) + "</code> " + esc(opLabel(iv)); }).join(", ") +
      ": task loss " + num(r.baseline.task_loss, 3) + " \u2192 <b>" + num(r.intervened.task_loss, 3) + "</b> (" + (d >= 0 ? "+" : "") +
      num(d, 3) + "), accuracy " + num(r.baseline.accuracy, 2) + " \u2192 " + num(r.intervened.accuracy, 2) +
      ' <span class="note">(' + (r.mode === "circuit" ? "circuit alone" : "full model") + ")</span>";
  }

  function selectNode(name) {
    S.node = name;
    if (S.view) S.view.select(name);
    $("node-input") && ($("node-input").value = name);
    $("text-node") && ($("text-node").placeholder = "node (default: " + name + ")");
    if (STATIC) {
      var p = STATIC.nodes[name];
      if (p) renderNodePanel(p); else $("node-body").innerHTML = '<p class="hint">No panel for ' + esc(name) + "</p>";
      return;
    }
    $("node-body").innerHTML = '<p class="hint">Loading ' + esc(name) + "\u2026</p>";
    status("loading node " + name + "\u2026");
    var params = Object.assign({ node: name, task: S.circuit ? null : S.task }, target());
    api("api/node", params).then(function (p) {
      if (S.node !== name) return;
      renderNodePanel(p);
      status("");
    }).catch(function (e) {
      $("node-body").innerHTML = '<p class="error">' + esc(e.message) + "</p>";
      status(e.message, true);
    });
  }

  // ---------------------------------------------------------------- interventions
  function opLabel(iv) {
    return { ablate_mean: "mean-ablate", ablate_zero: "zero-ablate", clamp: "clamp to " + iv.value, scale: "scale by " + iv.value }[iv.op];
  }

  function addIntervention(node, op) {
    S.revealResult = true;  // the user asked: bring the results into view when they arrive
    if (STATIC) { S.interventions = [{ node: node, op: op, value: null }]; renderInterventions(); return; }
    var value = null;
    if (op === "clamp" || op === "scale") {
      value = parseFloat($("op-" + op).value);
      if (!isFinite(value)) { status("enter a number for " + op, true); return; }
    }
    S.interventions = S.interventions.filter(function (iv) { return iv.node !== node; });
    S.interventions.push({ node: node, op: op, value: value });
    renderInterventions();
  }

  function renderInterventions() {
    var list = $("intervene-list");
    if (!S.interventions.length) list.innerHTML = "";
    else {
      list.innerHTML = S.interventions.map(function (iv, i) {
        return '<span class="chip"><code>' + esc(iv.node) + "</code> " + esc(opLabel(iv)) +
          (STATIC ? "" : ' <button class="chip-x" data-i="' + i + '" title="remove">\u00d7</button>') + "</span>";
      }).join("") + (STATIC ? "" : ' <button id="intervene-clear" type="button">clear</button>');
      list.querySelectorAll(".chip-x").forEach(function (b) {
        b.addEventListener("click", function () { S.interventions.splice(+b.dataset.i, 1); renderInterventions(); });
      });
      var clear = $("intervene-clear");
      if (clear) clear.addEventListener("click", function () { S.interventions = []; renderInterventions(); });
    }
    runInterventions();
  }

  function runInterventions() {
    var out = $("intervene-result");
    if (STATIC) {
      var iv = S.interventions[0];
      var byNode = STATIC.ablations[S.mode] || {};
      var r = iv ? byNode[iv.node] && byNode[iv.node][iv.op] : STATIC.baseline[S.mode];
      if (r) renderResult(r); else out.innerHTML = '<p class="hint">No precomputed result.</p>';
      return;
    }
    var task = S.circuit ? null : S.task;
    if (!S.circuit && (!S.model || !S.task)) { out.innerHTML = '<p class="hint">Choose a model and a task.</p>'; return; }
    out.classList.add("busy");
    status("running interventions\u2026");
    var body = Object.assign({ task: task, n: 32, interventions: S.interventions, mode: S.circuit ? S.mode : "model" }, target());
    api("api/intervene", null, body).then(function (r) {
      out.classList.remove("busy");
      renderResult(r);
      status("");
    }).catch(function (e) {
      out.classList.remove("busy");
      out.innerHTML = '<p class="error">' + esc(e.message) + "</p>";
      status(e.message, true);
    });
  }

  function renderResult(r) {
    S.lastResult = r;
    showEffect(r);
    var b = r.baseline, v = r.intervened;
    function row(key, label, lowerIsBetter) {
      var d = v[key] - b[key];
      var cls = Math.abs(d) < 1e-9 ? "" : (d > 0) === lowerIsBetter ? "worse" : "better";
      return '<tr class="metric-' + key.replace(/_/g, "-") + '"><th>' + label + '</th><td class="baseline">' + num(b[key]) +
        '</td><td class="intervened">' + num(v[key]) + '</td><td class="delta ' + cls + '">' + (d >= 0 ? "+" : "") + num(d) + "</td></tr>";
    }
    var html = '<p class="note">' + esc(r.task) + ", first " + r.n + " val examples, " +
      (r.mode === "circuit" ? "circuit alone" : "full model") +
      (r.interventions.length ? "" : " \u00b7 no intervention yet") +
      (r.mean_source ? " \u00b7 means from " + esc(r.mean_source) : "") + "</p>" +
      '<table class="metrics"><tr><th></th><th>' + (r.mode === "circuit" ? "circuit" : "model") + '</th><th>intervened</th><th>\u0394</th></tr>' +
      row("task_loss", "task loss", true) + row("two_way_loss", "two-way loss", true) + row("accuracy", "accuracy", false) + "</table>";
    html += '<div class="examples-box"><table class="examples"><tr><th>class</th><th>\u2026 context</th><th>correct / wrong</th><th>p(correct)</th><th>p(wrong)</th></tr>';
    var examples = r.examples || (STATIC && STATIC.baseline[r.mode] ? STATIC.baseline[r.mode].examples : []);
    examples.forEach(function (ex, i) {
      var whole = ex.context !== undefined ? ex.context : ex.tail;
      var cut = whole.length > ex.tail.length;
      html += '<tr><td class="cls">' + esc(ex["class"]) + '</td><td class="ctx' + (cut ? " cut" : "") + '"' +
        (cut ? ' title="click to show the whole context"' : "") + '><code class="ctx-tail">' + (cut ? "\u2026" : "") +
        esc(showTok(ex.tail, false)) + '</code>' + (cut ? '<code class="ctx-full">' + esc(showTok(whole, true)) + "</code>" : "") +
        "</td><td class=\"cands\">" +
        tokCode(ex.correct) + " / " + tokCode(ex.wrong) + "</td>" +
        "<td>" + pbar(b.p_correct[i], v.p_correct[i], "#16a34a") + "</td><td>" + pbar(b.p_wrong[i], v.p_wrong[i], "#dc2626") + "</td></tr>";
    });
    $("intervene-result").innerHTML = html + "</table></div>";
    $("intervene-result").querySelectorAll("td.ctx.cut").forEach(function (td) {
      td.addEventListener("click", function () { td.classList.toggle("open"); });
    });
    if (S.revealResult) {
      S.revealResult = false;
      $("intervene-result").scrollIntoView({ block: "nearest" });
    }
  }

  function pbar(before, after, color) {
    return '<div class="pbar" title="' + num(before, 3) + " \u2192 " + num(after, 3) + '"><div class="pbar-before" style="width:' +
      (100 * before).toFixed(1) + '%"></div><div class="pbar-after" style="width:' + (100 * after).toFixed(1) + "%;background:" + color +
      '"></div></div><span class="pnum">' + fmtP(before) + "\u2192" + fmtP(after) + "</span>";
  }

  // ---------------------------------------------------------------- circuit
  /* What the circuit file's keys mean, for the header (the raw key stays in the tooltip). */
  var LABELS = {
    full_model_val: "full model, val",
    full_model_test: "full model, test",
    val_before_calibration: "circuit, val (uncalibrated)",
    val_after_calibration: "circuit, val (calibrated)",
    test_sufficiency: "circuit alone, test",
    test_sufficiency_uncalibrated: "circuit alone, test (uncalibrated)",
    test_necessity: "model without the circuit, test",
    test_all_ablated: "everything ablated, test",
    val: "val loss",
    test: "test loss",
    nodes: "nodes",
    units: "mask units",
    edges: "edges",
    edges_total: "edges incl. token rows",
    model_nodes: "nodes in the model",
    target_loss: "target loss",
    ablation: "ablation",
    "model.step": "model step",
  };
  function label(key) {
    if (LABELS[key]) return LABELS[key];
    return key.replace(/_uncalibrated$/, " (uncalibrated)").replace(/[._]/g, " ");
  }
  function kvHTML(obj, keys, fmtValue) {
    return keys.map(function (k) {
      return '<span title="' + esc(k) + '"><b>' + esc(label(k)) + "</b> " + fmtValue(obj[k]) + "</span>";
    }).join("");
  }
  // The header's first line; every other count, loss and scalar is under "more".
  var MAIN_COUNTS = ["nodes", "edges"];
  var MAIN_LOSSES = ["full_model_val", "val_after_calibration", "test_sufficiency", "test_necessity", "val", "test"];
  function renderSummary(view) {
    var c = view.circuit;
    function value(v) { return typeof v === "number" ? (Number.isInteger(v) ? String(v) : num(v)) : esc(v); }
    function split(obj, main) {
      var keys = Object.keys(obj || {});
      return [main.filter(function (k) { return keys.indexOf(k) >= 0; }), keys.filter(function (k) { return main.indexOf(k) < 0; })];
    }
    var cs = split(c.counts, MAIN_COUNTS), ls = split(c.losses, MAIN_LOSSES);
    if (!ls[0].length) { ls = [ls[1].slice(0, 4), ls[1].slice(4)]; }
    var losses = kvHTML(c.losses || {}, ls[0], function (v) { return num(v); });
    var counts = kvHTML(c.counts || {}, cs[0], value);
    var extra = kvHTML(c.counts || {}, cs[1], value) + kvHTML(c.losses || {}, ls[1], function (v) { return num(v); }) +
      kvHTML(c.summary || {}, Object.keys(c.summary || {}), value);
    var lossKind = (c.summary || {})["hyperparameters.loss"];
    var warn = (view.warnings || []).map(function (w) { return '<p class="warning">' + esc(w) + "</p>"; }).join("");
    $("circuit-summary").innerHTML = '<div class="summary-title"><b>' + esc(c.name) + "</b> \u00b7 task <code>" + esc(c.task) +
      "</code> \u00b7 model <code>" + esc(view.model) + "</code>" + (c.ablation ? " \u00b7 " + esc(c.ablation) + " ablation" : "") + "</div>" +
      '<div class="kv"><span class="counts">' + counts + '</span><span class="losses"><span class="kv-head">' +
      esc(lossKind ? lossKind.replace(/_/g, "-") + " loss" : "loss") + ":</span>" + losses + "</span></div>" +
      (extra ? '<details><summary>more</summary><div class="kv">' + extra + "</div></details>" : "") + warn;
  }

  function showCircuit(view) {
    S.graph = view.graph;
    renderSummary(view);
    $("legend").innerHTML = SC.legendHTML();
    S.view = SC.renderGraph($("graph"), view.graph, { onSelect: selectNode, tooltip: tooltip });
    if (!view.graph.nodes.length) $("graph").insertAdjacentHTML("beforeend", '<p class="hint">This circuit has no nodes.</p>');
  }

  function loadCircuit(id) {
    S.circuit = id || null;
    S.node = null;
    S.interventions = [];
    S.lastResult = null;
    $("intervene-list").innerHTML = "";
    $("intervene-mode").disabled = !id;
    if (!id) { S.mode = "model"; $("intervene-mode").value = "model"; }
    $("node-body").innerHTML = '<p class="hint">Click a node in the graph.</p>';
    if (!id) {
      $("graph").innerHTML = '<p class="hint">No circuit chosen: inspect nodes of the model by name.</p>';
      $("circuit-summary").innerHTML = "";
      $("legend").innerHTML = "";
      renderInterventions();
      return;
    }
    status("loading circuit\u2026");
    $("graph").innerHTML = '<p class="hint">Loading circuit\u2026</p>';
    api("api/circuit", { id: id }).then(function (view) {
      if (S.circuit !== id) return;
      S.model = view.model;
      S.task = view.circuit.task;
      setSelect("pick-model", S.model);
      setSelect("pick-task", S.task);
      showCircuit(view);
      status("");
      renderInterventions();
    }).catch(function (e) {
      $("graph").innerHTML = '<p class="error">' + esc(e.message) + "</p>";
      status(e.message, true);
    });
  }

  // ---------------------------------------------------------------- pickers
  function setSelect(id, value) {
    var sel = $(id);
    if (value && !Array.prototype.some.call(sel.options, function (o) { return o.value === value; })) {
      var o = document.createElement("option"); o.value = value; o.textContent = value; sel.appendChild(o);
    }
    sel.value = value || "";
    titleFromOption(sel);
  }
  function fill(id, items, blank) {
    var sel = $(id);
    sel.innerHTML = (blank ? '<option value="">' + blank + "</option>" : "") + items.map(function (it) {
      return '<option value="' + esc(it.value) + '" title="' + esc(it.label) + '"' + (it.disabled ? " disabled" : "") + ">" + esc(it.label) + "</option>";
    }).join("");
    titleFromOption(sel);
  }
  /* A select shows its whole choice on hover, however narrow the top bar makes it. */
  function titleFromOption(sel) {
    var o = sel.options[sel.selectedIndex];
    sel.title = o ? o.textContent : "";
  }
  function fillCircuits() {
    var items = S.artifacts.circuits.map(function (c) {
      return { value: c.id, label: c.error ? c.id + " (unreadable: " + c.error.slice(0, 120) + ")" : c.id + "  (" + c.task + ", " + c.nodes + " nodes, " + c.edges + " edges)", disabled: !!c.error };
    });
    fill("pick-circuit", items, items.length ? "\u2014 no circuit \u2014" : "\u2014 no circuits found \u2014");
  }

  function initLive() {
    document.querySelectorAll("[data-static]").forEach(function (e) { e.remove(); });
    status("loading artifacts\u2026");
    Promise.all([api("api/artifacts"), api("api/tasks")]).then(function (res) {
      S.artifacts = res[0];
      S.tasks = res[1];
      fill("pick-model", S.artifacts.models.map(function (m) {
        return { value: m.id, label: m.id + (m.error ? " (unreadable: " + m.error.slice(0, 120) + ")" : m.step !== undefined && m.step !== null ? "  (step " + m.step + ")" : ""), disabled: !!m.error };
      }), S.artifacts.models.length ? null : "\u2014 no models found \u2014");
      fill("pick-task", S.tasks.map(function (t) { return { value: t.name, label: t.name }; }));
      fillCircuits();
      S.model = $("pick-model").value || null;
      S.task = $("pick-task").value || null;
      status("");
      var wanted = new URLSearchParams(location.search).get("circuit");
      var first = S.artifacts.circuits.filter(function (c) { return !c.error; })[0];
      var pick = wanted || (first ? first.id : "");
      setSelect("pick-circuit", pick);
      loadCircuit(pick);
    }).catch(function (e) { status(e.message, true); });

    ["pick-model", "pick-task", "pick-circuit"].forEach(function (id) {
      $(id).addEventListener("change", function () { titleFromOption(this); });
    });
    $("pick-circuit").addEventListener("change", function () { loadCircuit(this.value); });
    $("pick-model").addEventListener("change", function () {
      S.model = this.value; setSelect("pick-circuit", ""); loadCircuit("");
    });
    $("pick-task").addEventListener("change", function () {
      S.task = this.value;
      if (S.circuit) { setSelect("pick-circuit", ""); loadCircuit(""); } else renderInterventions();
    });
    $("node-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = $("node-input").value.trim();
      if (name) selectNode(name);
    });
    $("intervene-mode").addEventListener("change", function () { S.mode = this.value; runInterventions(); });
    $("text-run").addEventListener("click", runText);
    $("steer-run").addEventListener("click", runSteer);
  }

  function runText() {
    var node = $("text-node").value.trim() || S.node;
    var out = $("text-result");
    if (!node) { out.innerHTML = '<p class="error">pick a node first</p>'; return; }
    status("colouring tokens\u2026");
    api("api/tokens", null, Object.assign({ node: node, text: $("text-input").value }, target())).then(function (r) {
      out.innerHTML = '<p class="note"><code>' + esc(r.node) + "</code>, max |act| " + num(r.scale, 3) +
        (r.truncated ? " \u00b7 first " + r.truncated + " tokens dropped (n_ctx)" : "") + '</p><div class="textview">' +
        tokensHTML(r.tokens, r.acts, r.scale, -1, true) + "</div>";
      status("");
    }).catch(function (e) { out.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; status(e.message, true); });
  }

  function runSteer() {
    var out = $("steer-result");
    status("generating\u2026");
    var body = Object.assign({ prompt: $("steer-prompt").value, tokens: parseInt($("steer-tokens").value, 10) || 16,
      interventions: S.interventions }, target());
    api("api/steer", null, body).then(function (r) {
      var n = r.prompt.length;
      function show(t) { return "<b>" + esc(t.slice(0, n)) + "</b>" + esc(t.slice(n)); }
      out.innerHTML = '<div class="gen"><div class="gen-label">without</div><pre class="gen-plain">' + show(r.plain) + "</pre></div>" +
        '<div class="gen"><div class="gen-label">with ' + (r.interventions.length ? r.interventions.map(function (iv) { return iv.node + " " + opLabel(iv); }).join(", ") : "no intervention") +
        '</div><pre class="gen-steered">' + show(r.steered) + "</pre></div>";
      status("");
    }).catch(function (e) { out.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; status(e.message, true); });
  }

  function initStatic() {
    document.querySelectorAll("[data-live]").forEach(function (e) { e.remove(); });
    document.body.classList.add("static");
    $("static-title").textContent = "report \u00b7 " + STATIC.view.circuit.name;
    $("static-title").insertAdjacentHTML("afterend", '<span id="static-note">static report: precomputed mean/zero ablations only; ' +
      "live clamping, scaling, text and steering need <code>sparsecircuits serve</code></span>");
    $("intervene-list").insertAdjacentHTML("beforebegin", '<p class="static-note">This report holds each node\'s mean- and ' +
      "zero-ablation result, computed when it was written. Combining interventions, clamping, scaling, per-token text and " +
      "steering are live only: run <code>sparsecircuits serve</code> on the artifacts directory.</p>");
    S.circuit = STATIC.view.circuit.id;
    showCircuit(STATIC.view);
    var modes = Object.keys(STATIC.baseline || {});
    Array.prototype.forEach.call($("intervene-mode").options, function (o) { o.disabled = modes.indexOf(o.value) < 0; });
    $("intervene-mode").addEventListener("change", function () { S.mode = this.value; runInterventions(); });
    if (STATIC.baseline && STATIC.baseline.model) renderResult(STATIC.baseline.model);
  }

  // Shared with latents.js: a latent page renders snippets, charts and results as a node's.
  Object.assign(SC, {
    api: api, esc: esc, num: num, status: status, tokCode: tokCode, tokensHTML: tokensHTML,
    histogramSVG: histogramSVG, snippetsHTML: snippetsHTML, explanationHTML: explanationHTML, taskHTML: taskHTML, logitHTML: logitHTML,
    renderResult: renderResult, STATIC: STATIC, state: S,
  });

  if (STATIC) initStatic(); else initLive();
})();
