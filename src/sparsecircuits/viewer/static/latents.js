/* The latent page: an SAE latent shown like a node (snippets, histograms, logit effect, task
 * classes) with interventions (zero, scale, clamp, clamp to x times its max) on the task and
 * on generation. Loaded after viewer.js, whose renderers it reuses (window.SC).
 *
 * Live mode (`sparsecircuits serve --sae DIR`): GET api/saes, api/latent, api/latent/search
 * (the search box: latents by cached explanation); POST api/latent/intervene,
 * api/latent/steer. Static mode (`sparsecircuits report --sae DIR`):
 * the report's JSON holds `latents` (pages of a few latents, each zeroed and clamped to 2x its
 * max on the task), and the page shows those only.
 */
(function () {
  "use strict";
  var SC = window.SC;
  var $ = function (id) { return document.getElementById(id); };
  var esc = SC.esc, num = SC.num;
  var STATIC = SC.STATIC;
  var L = { sae: null, latent: null };

  function densitySVG(d) {
    if (!d.counts.length) return '<p class="hint">No latent fired on the scanned tokens.</p>';
    var W = 480, H = 70, pad = 22, n = d.counts.length;
    var max = Math.max.apply(null, d.counts) || 1, bw = (W - 2 * pad) / n;
    var lo = d.edges[0], hi = d.edges[n];
    var out = '<svg class="hist density" width="' + W + '" height="' + (H + 18) + '">';
    d.counts.forEach(function (c, i) {
      var bh = (H - 10) * Math.sqrt(c / max);
      out += '<rect x="' + (pad + i * bw + 0.5) + '" y="' + (H - bh) + '" width="' + Math.max(1, bw - 1) + '" height="' + bh +
        '" fill="#94a3b8"><title>10^' + num(d.edges[i], 2) + " .. 10^" + num(d.edges[i + 1], 2) + ": " + c + " latents</title></rect>";
    });
    if (d["this"] !== null) {
      var x = pad + ((d["this"] - lo) / ((hi - lo) || 1)) * (W - 2 * pad);
      out += '<line class="this-latent" x1="' + x + '" y1="0" x2="' + x + '" y2="' + H + '" stroke="#f97316" stroke-width="2"/>';
    }
    out += '<line x1="' + pad + '" y1="' + H + '" x2="' + (W - pad) + '" y2="' + H + '" stroke="#888"/>';
    out += '<text x="' + pad + '" y="' + (H + 14) + '" class="axis">10^' + num(lo, 1) + "</text>";
    out += '<text x="' + (W - pad) + '" y="' + (H + 14) + '" text-anchor="end" class="axis">10^' + num(hi, 1) + "</text></svg>";
    return out + '<p class="note">' + d.latents + " latents (" + d.dead + " never fired) by the fraction of tokens they fire on; " +
      '<span style="color:#f97316">this one</span>: ' + num(100 * d.this_density, 3) + "%.</p>";
  }

  function actionsHTML(p) {
    if (STATIC) {
      return '<div class="actions latent-actions"><button data-op="ablate">zero</button>' +
        '<button data-op="clamp_max" data-value="2">clamp to 2\u00d7 max</button>' +
        '<span class="note">precomputed on the task\'s val examples</span></div>';
    }
    return '<div class="actions latent-actions">' +
      '<button data-op="ablate">zero</button>' +
      '<span class="op-group"><button data-op="clamp_max">clamp to</button><input id="lat-clamp_max" type="number" step="any" value="5">\u00d7 max</span>' +
      '<span class="op-group"><button data-op="clamp">clamp to</button><input id="lat-clamp" type="number" step="any" value="' + num(p.max, 3) + '"></span>' +
      '<span class="op-group"><button data-op="scale">scale by</button><input id="lat-scale" type="number" step="any" value="-1"></span>' +
      "</div>" +
      '<div class="latent-steer"><textarea id="latent-prompt" rows="2" spellcheck="false">x = </textarea>' +
      '<div class="row"><label>tokens <input id="latent-tokens" type="number" value="24" min="1" max="512"></label>' +
      '<span class="note">Generate uses the last intervention chosen above (default: clamp to 5\u00d7 max).</span>' +
      '<button id="latent-steer-run" type="button">Generate</button></div><div id="latent-steer-result"></div></div>';
  }

  function render(p) {
    var c = p.corpus;
    var hist = SC.histogramSVG(c.histogram).replace("(AbsTopK)", "(TopK: the latent is off)");
    var html = '<div class="node-head"><span class="node-name">latent ' + p.latent + '</span><span class="badge">' + esc(p.sae) + "</span></div>" +
      SC.explanationHTML(p.explanation) + '<p class="meta">' + esc(p.sae_summary) + " \u00b7 model " + esc(p.model) + "</p>" + actionsHTML(p) +
      '<p class="stats">max <b class="latent-max">' + num(p.max, 3) + "</b> \u00b7 fires on " + num(100 * c.active_fraction, 2) +
      "% of " + c.tokens + " pretraining tokens (" + c.windows + " val windows) \u00b7 mean " + num(c.mean) + "</p>" +
      "<h3>Activation histogram</h3>" + hist +
      "<h3>Density among all latents</h3>" + densitySVG(p.density) +
      SC.snippetsHTML(c.top, c.scale, "Top-activating snippets", "Never active on the scanned tokens.") +
      SC.snippetsHTML(c.bottom, c.bottom_scale, "Bottom: most negative encoder pre-activation", "No negative pre-activation.") +
      SC.taskHTML(p) + SC.logitHTML(p.logit_effect);
    var body = $("latent-body");
    body.innerHTML = html;
    L.op = STATIC ? null : { op: "clamp_max", value: 5 };
    body.querySelectorAll(".latent-actions button").forEach(function (b) {
      b.addEventListener("click", function () { intervene(b.dataset.op, b.dataset.value); });
    });
    var run = $("latent-steer-run");
    if (run) run.addEventListener("click", steer);
  }

  function opValue(op, given) {
    if (op === "ablate") return null;
    var v = parseFloat(given !== undefined ? given : $("lat-" + op).value);
    return isFinite(v) ? v : NaN;
  }

  function task() {
    return SC.state.task || null;
  }

  function intervene(op, given) {
    var value = opValue(op, given);
    if (typeof value === "number" && isNaN(value)) { SC.status("enter a number for " + op, true); return; }
    L.op = { op: op, value: value };
    if (STATIC) {
      var r = ((STATIC.latents.interventions || {})[L.latent] || {})[op];
      if (r) SC.renderResult(r); else SC.status("no precomputed result", true);
      return;
    }
    if (!task()) { SC.status("choose a task to score the intervention on", true); return; }
    SC.status("running latent intervention\u2026");
    SC.api("api/latent/intervene", null, { sae: L.sae, latent: L.latent, op: op, value: value, task: task(), n: 32 })
      .then(function (r) { SC.renderResult(r); SC.status(""); $("intervene-result").scrollIntoView({ block: "nearest" }); })
      .catch(function (e) { SC.status(e.message, true); });
  }

  function steer() {
    var out = $("latent-steer-result");
    var chosen = L.op || { op: "clamp_max", value: 5 };
    SC.status("generating\u2026");
    SC.api("api/latent/steer", null, { sae: L.sae, latent: L.latent, op: chosen.op, value: chosen.value,
      prompt: $("latent-prompt").value, tokens: parseInt($("latent-tokens").value, 10) || 24 }).then(function (r) {
      var n = r.prompt.length, iv = r.interventions[0];
      function show(t) { return "<b>" + esc(t.slice(0, n)) + "</b>" + esc(t.slice(n)); }
      out.innerHTML = '<div class="gen"><div class="gen-label">without</div><pre class="gen-plain">' + show(r.plain) + "</pre></div>" +
        '<div class="gen"><div class="gen-label">with ' + esc(iv.node) + " " + esc(iv.op) + (iv.value !== null ? " " + num(iv.value, 3) : "") +
        '</div><pre class="gen-steered">' + show(r.steered) + "</pre></div>";
      SC.status("");
    }).catch(function (e) { out.innerHTML = '<p class="error">' + esc(e.message) + "</p>"; SC.status(e.message, true); });
  }

  function open(sae, latent) {
    L.sae = sae; L.latent = latent;
    $("latent-input").value = latent;
    if (STATIC) {
      var p = STATIC.latents.panels[String(latent)];
      if (p) render(p); else $("latent-body").innerHTML = '<p class="hint">No page for latent ' + esc(latent) + " in this report.</p>";
      return;
    }
    $("latent-body").innerHTML = '<p class="hint">Loading latent ' + esc(latent) + "\u2026</p>";
    SC.status("loading latent " + latent + "\u2026");
    SC.api("api/latent", { sae: sae, latent: latent, task: task() }).then(function (p) {
      if (L.latent !== latent || L.sae !== sae) return;
      render(p);
      SC.status("");
    }).catch(function (e) {
      $("latent-body").innerHTML = '<p class="error">' + esc(e.message) + "</p>";
      SC.status(e.message, true);
    });
  }

  /* Live: list the chosen SAE's latents whose cached explanation contains the text, as the
   * graph's search lists nodes; clicking one opens its page. A newer query wins. */
  var searchSeq = 0, searchTimer = null;
  function search(query) {
    var box = $("latent-search-results"), sae = $("pick-sae").value, seq = ++searchSeq;
    if (!query.trim()) { box.hidden = true; return; }
    SC.api("api/latent/search", { sae: sae, q: query }).then(function (r) {
      if (seq !== searchSeq) return;
      var head = r.explained ? r.total + " latent" + (r.total === 1 ? "" : "s") + " whose explanation contains \u201c" + esc(r.query) + "\u201d" +
        (r.hits.length < r.total ? " (best " + r.hits.length + " by detection)" : "")
        : "no latent of " + esc(sae) + " has a cached explanation: run <code>sparsecircuits explain MODEL --sae DIR</code>";
      SC.fillSearchResults(box, head, "latent", r.hits.map(function (h) {
        return { value: h.latent, text: h.text, extra: ' <span class="hit-score">detection ' + num(h.detection, 2) + "</span>" };
      }), function (hit) { open(sae, hit.value); },
      function () { $("latent-search").value = ""; search(""); });
      box.hidden = false;
    }).catch(function (e) {
      if (seq !== searchSeq) return;
      box.innerHTML = '<p class="error">' + esc(e.message) + "</p>";
      box.hidden = false;
    });
  }

  function initStatic() {
    var data = STATIC.latents;
    if (!data) return;
    $("latent-panel").hidden = false;
    $("latent-form").remove();
    $("latent-list").innerHTML = '<p class="note">' + esc(data.summary) + " \u00b7 latents chosen by " + esc(data.chosen_by) + ":</p>" +
      '<div class="latent-picks">' + data.order.map(function (i) {
        var ex = (data.panels[String(i)] || {}).explanation;
        var tip = ex && ex.status === "ok" ? ' title="' + esc(ex.text + " (detection " + num(ex.detection, 2) + ")") + '"' : "";
        return '<button type="button" data-latent="' + i + '"' + tip + ">" + i + "</button>";
      }).join(" ") + "</div>";
    $("latent-list").querySelectorAll("button").forEach(function (b) {
      b.addEventListener("click", function () { open(data.sae, parseInt(b.dataset.latent, 10)); });
    });
    $("latent-list").insertAdjacentHTML("beforeend", '<input id="latent-input" type="hidden">');
    if (data.order.length) open(data.sae, data.order[0]);
  }

  function initLive() {
    SC.api("api/saes").then(function (saes) {
      if (!saes.length) return;
      $("latent-panel").hidden = false;
      $("pick-sae").innerHTML = saes.map(function (s) {
        return '<option value="' + esc(s.id) + '" title="' + esc(s.summary) + '">' + esc(s.id) + "</option>";
      }).join("");
      $("latent-form").addEventListener("submit", function (ev) {
        ev.preventDefault();
        var i = parseInt($("latent-input").value, 10);
        if (isFinite(i)) open($("pick-sae").value, i);
      });
      $("latent-search").addEventListener("input", function () {
        var query = this.value;
        clearTimeout(searchTimer);
        searchTimer = setTimeout(function () { search(query); }, 150);
      });
      $("pick-sae").addEventListener("change", function () { search($("latent-search").value); });
      var q = new URLSearchParams(location.search);
      if (q.get("latent") !== null) {
        var sae = q.get("sae") || saes[0].id;
        $("pick-sae").value = sae;
        open(sae, parseInt(q.get("latent"), 10));
        $("latent-panel").scrollIntoView({ block: "start" });
      }
    }).catch(function (e) { SC.status(e.message, true); });
  }

  if (STATIC) initStatic(); else initLive();
})();
