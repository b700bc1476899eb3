/*
 * cartwise operations dashboard: reads the admin API with the admin token (kept in this tab's
 * sessionStorage, or taken once from the URL fragment #token=… that `make run` prints; a
 * fragment never reaches a server or its logs) and draws KPIs, the funnel, fraud outcomes,
 * price changes, segments, widgets, experiments, live latency, and the fraud review queue
 * (approve / refuse a payment sent to review).  Charts are plain SVG.
 */
(function () {
  "use strict";
  var TOKEN_KEY = "cartwise.admin";
  var SVG = "http://www.w3.org/2000/svg";
  var $ = function (id) { return document.getElementById(id); };
  var latencyTimer = null;
  var REVIEWS_SHOWN = 50; // the review queue's newest open decisions on the board

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function takeTokenFromFragment() {
    var m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  /* The admin API with the token: a refused token throws an error marked `auth`. */
  function admin(path, init) {
    var headers = Object.assign({ Authorization: "Bearer " + token(), Accept: "application/json" },
      (init || {}).headers);
    return fetch(path, Object.assign({}, init, { headers: headers })).then(function (res) {
      if (res.status === 401) { throw Object.assign(new Error("the admin token was refused"), { auth: true }); }
      return res;
    });
  }

  function get(path) {
    return admin(path).then(function (res) {
      if (!res.ok) {
        return res.text().then(function (t) { throw new Error(path + " → " + res.status + " " + t); });
      }
      return res.json();
    });
  }

  function post(path, body) {
    return admin(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().then(function (j) {
        if (!res.ok) { throw new Error((j.error && j.error.message) || path + " → " + res.status); }
        return j;
      });
    });
  }

  // --- formatting -------------------------------------------------------------------------
  function num(x, digits) {
    return Number(x || 0).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
  }
  function pct(x, digits) { return (100 * (x || 0)).toFixed(digits === undefined ? 1 : digits) + " %"; }
  function money(x, cur) { return num(x, 2) + " " + (cur || ""); }
  function h(tag, attrs, children) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { n.append(c instanceof Node ? c : String(c)); });
    return n;
  }
  function s(tag, attrs, text) {
    var n = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) { n.textContent = text; }
    return n;
  }
  function table(head, rows) {
    return h("table", {}, [
      h("thead", {}, [h("tr", {}, head.map(function (c) { return h("th", {}, [c]); }))]),
      h("tbody", {}, rows.map(function (r) { return h("tr", {}, r.map(function (c) { return h("td", {}, [c]); })); }))
    ]);
  }
  function empty(node, text) { node.replaceChildren(h("p", { class: "empty" }, [text])); }

  // --- charts -----------------------------------------------------------------------------
  /* Horizontal bars: one row per label, value text at the end. */
  function hbars(node, labels, values, fmt) {
    if (!values.length || values.every(function (v) { return !v; })) { return empty(node, "no data in this period"); }
    var max = Math.max.apply(null, values), row = 26, width = 420, label = 130;
    var svg = s("svg", { viewBox: "0 0 " + width + " " + row * labels.length, class: "hbars", role: "img" });
    labels.forEach(function (l, i) {
      var w = max ? (width - label - 90) * values[i] / max : 0;
      svg.append(s("text", { x: 0, y: i * row + 17, class: "label" }, l));
      svg.append(s("rect", { x: label, y: i * row + 5, width: Math.max(w, 1), height: row - 10, class: "bar" }));
      svg.append(s("text", { x: label + w + 6, y: i * row + 17, class: "value" }, fmt ? fmt(values[i], i) : num(values[i])));
    });
    node.replaceChildren(svg);
  }

  /* Daily bars (revenue) with a line (orders) on its own scale. */
  function daily(node, series) {
    if (!series.length) { return empty(node, "no data in this period"); }
    var W = 760, H = 220, pad = 34, n = series.length, bw = (W - 2 * pad) / n;
    var maxR = Math.max.apply(null, series.map(function (d) { return d.revenue; })) || 1;
    var maxO = Math.max.apply(null, series.map(function (d) { return d.orders; })) || 1;
    var svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "daily", role: "img" });
    var points = [];
    series.forEach(function (d, i) {
      var bh = (H - 2 * pad) * d.revenue / maxR, x = pad + i * bw;
      var bar = s("rect", { x: x + 1, y: H - pad - bh, width: Math.max(bw - 2, 1), height: bh, class: "bar" });
      bar.append(s("title", {}, d.day + ": " + money(d.revenue) + ", " + d.orders + " orders"));
      svg.append(bar);
      points.push((x + bw / 2) + "," + (H - pad - (H - 2 * pad) * d.orders / maxO));
      if (i % Math.ceil(n / 8) === 0) { svg.append(s("text", { x: x, y: H - 10, class: "axis" }, d.day.slice(5))); }
    });
    svg.append(s("polyline", { points: points.join(" "), class: "line" }));
    svg.append(s("text", { x: 0, y: 14, class: "axis" }, "revenue (bars) max " + num(maxR) + " · orders (line) max " + num(maxO)));
    node.replaceChildren(svg);
  }

  /* A small line of p99 per minute. */
  function sparkline(series) {
    var W = 300, H = 50, vals = series.map(function (d) { return d.p99_ms || 0; });
    var max = Math.max.apply(null, vals) || 1;
    var pts = vals.map(function (v, i) {
      return (vals.length > 1 ? i * W / (vals.length - 1) : 0) + "," + (H - 4 - (H - 8) * v / max);
    });
    var svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "spark" });
    svg.append(s("polyline", { points: pts.join(" "), class: "line" }));
    return svg;
  }

  // --- sections ---------------------------------------------------------------------------
  function params() {
    var q = new URLSearchParams();
    if ($("from").value) { q.set("from", $("from").value); }
    if ($("to").value) { q.set("to", nextDay($("to").value)); }
    if ($("channel").value) { q.set("channel", $("channel").value); }
    return q.toString();
  }
  function nextDay(d) {
    var t = new Date(d + "T00:00:00Z");
    t.setUTCDate(t.getUTCDate() + 1);
    return t.toISOString().slice(0, 10);
  }

  function drawKpis(k) {
    var tiles = [
      ["Orders", num(k.orders)], ["Revenue", money(k.revenue, k.currency)],
      ["Average order", money(k.average_order_value, k.currency)],
      ["Visitors", num(k.visitors)], ["Conversion", pct(k.conversion_rate, 2)],
      ["Fraud decisions", num(k.fraud.decisions)], ["Fraud rate", pct(k.fraud.fraud_rate, 2)],
      ["Chargebacks", num(k.fraud.chargebacks) + " · " + money(k.fraud.chargeback_amount, k.currency)],
      ["Price changes", num(k.price_changes.count)]
    ];
    $("kpis").replaceChildren.apply($("kpis"), tiles.map(function (t) {
      return h("div", { class: "tile" }, [h("span", { class: "tile-label" }, [t[0]]), h("strong", {}, [t[1]])]);
    }));
    daily($("chart-revenue"), k.series);
    var outcomes = ["allow", "challenge", "review", "block"];
    hbars($("chart-fraud"), outcomes, outcomes.map(function (o) { return k.fraud.outcomes[o] || 0; }));
    var strategies = Object.keys(k.price_changes.by_strategy);
    hbars($("chart-prices"), strategies, strategies.map(function (x) { return k.price_changes.by_strategy[x]; }));
    var w = k.recommendations;
    if (!w.length) { empty($("widgets"), "no recommendations in this period"); } else {
      $("widgets").replaceChildren(table(
        ["widget", "impressions", "clicks", "add to cart", "purchases", "click-through", "conversion"],
        w.map(function (r) {
          return [r.widget, num(r.impressions), num(r.clicks), num(r.add_to_carts), num(r.purchases),
            pct(r.click_through_rate, 2), pct(r.conversion_rate, 2)];
        })));
    }
  }

  function drawFunnel(f) {
    hbars($("chart-funnel"), f.steps.map(function (x) { return x.step; }),
      f.steps.map(function (x) { return x.visitors; }),
      function (v, i) { return num(v) + (i ? " (" + pct(f.steps[i].rate_from_previous) + ")" : ""); });
  }

  function drawSegments(seg) {
    if (!seg.computed_at) {
      return empty($("chart-segments"), "not computed yet (cartwise customers segments)");
    }
    var rows = seg.segments || [];
    hbars($("chart-segments"), rows.map(function (r) { return r.segment; }),
      rows.map(function (r) { return r.customers; }));
  }

  function drawHighValue(hv) {
    var rows = hv.customers || [];
    if (!rows.length) { return empty($("high-value"), "segments not computed yet"); }
    $("high-value").replaceChildren(table(["customer", "segment", "orders", "spent"],
      rows.map(function (c) { return [c.customer_id, c.segment, num(c.frequency), money(c.monetary)]; })));
  }

  /* " [lo, hi]", or nothing while an interval is undefined (too few visitors). */
  function pval(p) { return p === null || p === undefined ? "n/a" : num(p, 3); }
  function interval(ci, fmt) { return ci ? " [" + fmt(ci[0]) + ", " + fmt(ci[1]) + "]" : ""; }

  function drawExperiments(list) {
    var node = $("experiments");
    var exps = list.experiments || [];
    if (!exps.length) { return empty(node, "no experiments yet (POST /v1/experiments)"); }
    node.replaceChildren();
    return Promise.all(exps.map(function (e) {
      if (e.status === "draft") {
        node.append(h("div", { class: "experiment" }, [h("h3", {}, [e.key + " · draft"])]));
        return null;
      }
      return get("/v1/experiments/" + encodeURIComponent(e.key) + "/results").then(function (r) {
        node.append(h("div", { class: "experiment", "data-key": r.key }, [
          h("h3", {}, [r.name + " (" + r.key + ") · " + r.status + " · " + r.target.kind + " " + r.target.name]),
          table(["variant", "weight", "visitors", "conversion [95 % CI]", "revenue / visitor [95 % CI]", "vs control"],
            r.variants.map(function (v) {
              var vs = v.vs_control;
              return [v.name, num(v.weight), num(v.visitors),
                pct(v.conversion_rate, 2) + interval(v.conversion_ci, function (x) { return pct(x, 2); }),
                num(v.revenue_per_visitor, 2) + interval(v.rpv_ci, function (x) { return num(x, 2); }),
                vs ? ("conversion " + (vs.conversion_lift >= 0 ? "+" : "") + pct(vs.conversion_lift, 2) +
                  " (p=" + pval(vs.conversion_p_value) + "), rpv " + (vs.rpv_lift >= 0 ? "+" : "") +
                  num(vs.rpv_lift, 2) + " (p=" + pval(vs.rpv_p_value) + ")") : (v.name === r.control ? "control" : "–")];
            }))
        ]));
      });
    }));
  }

  /* The payments sent to manual review: approve (a legit label) or refuse (a fraud label). */
  function drawReviews(page) {
    var node = $("reviews");
    var items = page.items || [];
    function nothingLeft() {
      empty(node, "nothing waiting for review");
      node.dataset.state = "ready";
    }
    if (!items.length) { return nothingLeft(); }
    function verdict(row, d, resolution) {
      row.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      return post("/v1/fraud/reviews/" + encodeURIComponent(d.decision_id), { resolution: resolution })
        .then(function () {
          var body = row.parentNode;
          row.remove();
          if (!body.children.length) { nothingLeft(); }
        }, function (err) {
          if (err.auth) { return fail(err); }
          row.querySelector(".review-error").textContent = err.message;
          row.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
        });
    }
    var rows = items.map(function (d) {
      var rule = (d.matched_rules || []).filter(function (m) { return m.decisive; })[0];
      var why = rule ? "rule " + (rule.name || rule.id)
        : (d.reasons || []).slice(0, 2).map(function (r) { return r.feature; }).join(", ");
      var approve = h("button", { type: "button", class: "approve" }, ["Approve"]);
      var refuse = h("button", { type: "button", class: "refuse" }, ["Refuse"]);
      var row = h("tr", { "data-decision": d.decision_id }, [
        h("td", {}, [String(d.timestamp || d.created_at).replace("T", " ").slice(0, 19)]),
        h("td", {}, [d.customer_id]),
        h("td", {}, [money(d.amount, d.currency)]),
        h("td", {}, [num(d.risk_score)]),
        h("td", {}, [why]),
        h("td", {}, [approve, " ", refuse, h("span", { class: "review-error error" }, [])])
      ]);
      approve.addEventListener("click", function () { verdict(row, d, "approve"); });
      refuse.addEventListener("click", function () { verdict(row, d, "refuse"); });
      return row;
    });
    var queue = table(["time (UTC)", "customer", "amount", "risk", "why", "verdict"], []);
    var tbody = queue.querySelector("tbody");
    rows.forEach(function (row) { tbody.append(row); });
    node.replaceChildren(queue);
    if (page.next_cursor) { node.append(h("p", { class: "empty" }, ["the " + REVIEWS_SHOWN + " newest shown"])); }
    node.dataset.state = "ready";
  }

  function drawLatency(lat) {
    var node = $("latency");
    if (!lat.routes.length) { return empty(node, "no requests in the last " + lat.minutes + " minutes"); }
    node.replaceChildren(
      sparkline(lat.series),
      table(["route", "requests", "p50 ms", "p95 ms", "p99 ms"], lat.routes.map(function (r) {
        return [r.route, num(r.count), num(r.p50_ms, 2), num(r.p95_ms, 2), num(r.p99_ms, 2)];
      })));
    node.dataset.state = "ready";
  }

  function optional(promise, node, what) {
    return promise.catch(function (err) {
      if (err.auth) { throw err; }
      empty(node, what + " unavailable: " + err.message);
    });
  }

  function load() {
    var q = params();
    $("board-error").hidden = true;
    $("board").dataset.state = "loading";
    return Promise.all([
      get("/v1/analytics/kpis?" + q).then(drawKpis),
      get("/v1/analytics/funnel?" + q).then(drawFunnel),
      optional(get("/v1/crm/segments").then(drawSegments), $("chart-segments"), "segments"),
      optional(get("/v1/crm/high-value?limit=10").then(drawHighValue), $("high-value"), "customers"),
      optional(get("/v1/experiments").then(drawExperiments), $("experiments"), "experiments"),
      optional(get("/v1/fraud/reviews?status=open&limit=" + REVIEWS_SHOWN).then(drawReviews), $("reviews"), "review queue"),
      refreshLatency()
    ]).then(function () {
      $("board").dataset.state = "ready";
    }, fail);
  }

  function refreshLatency() {
    return get("/v1/analytics/latency?minutes=5").then(drawLatency);
  }

  function fail(err) {
    if (err.auth) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(err.message);
      return;
    }
    $("board-error").textContent = err.message;
    $("board-error").hidden = false;
    $("board").dataset.state = "error";
  }

  function showLogin(message) {
    clearInterval(latencyTimer);
    $("board").hidden = true;
    $("login").hidden = false;
    if (message) { $("login-error").textContent = message; $("login-error").hidden = false; }
  }

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    get("/v1/channels").catch(function () { return []; }).then(function (chs) {
      (chs.items || chs).forEach(function (c) { $("channel").append(h("option", { value: c.id }, [c.id])); });
    });
    load();
    clearInterval(latencyTimer);
    latencyTimer = setInterval(function () { refreshLatency().catch(fail); }, 5000);
  }

  function init() {
    var today = new Date(), from = new Date(today.getTime() - 29 * 86400000);
    $("to").value = today.toISOString().slice(0, 10);
    $("from").value = from.toISOString().slice(0, 10);
    $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); load(); });
    $("login").addEventListener("submit", function (ev) {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      start();
    });
    takeTokenFromFragment();
    if (token()) { start(); } else { showLogin(); }
  }

  init();
})();
