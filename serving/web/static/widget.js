/*
 * cartwise storefront widget.
 *
 * One tag on a shop page:
 *   <script src="https://cartwise.example/static/widget.js" data-channel="web-de"
 *           data-key="cw_pk_…" data-customer="cus_123" async></script>
 * and one placeholder per widget:
 *   <div data-cartwise-widget="home" data-k="8"></div>
 *   <div data-cartwise-widget="product_page" data-context-sku="SKU-1"
 *        data-link="/products/{sku}"></div>
 *
 * Each placeholder gets the shopper's recommendations with live prices (quotes for this
 * customer and channel), and the shopper's clicks and add-to-carts go back as events carrying
 * the recommendation's id, so click-through and conversion are measured per widget.
 * Without data-customer the shopper is anonymous and known by a session id kept in
 * localStorage.  The page can also send its own events: cartwise.track("view", "SKU-1").
 * data-key is the channel's publishable key (cw_pk_…, public by design: it can only read the
 * storefront and send events); never put a secret key (cw_sk_…) in a page.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var api = (script.dataset.api || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var channel = script.dataset.channel || null;
  var customer = script.dataset.customer || null;
  var key = script.dataset.key || null;
  var session = sessionId();

  function sessionId() {
    var key = "cartwise.session";
    try {
      var found = localStorage.getItem(key);
      if (found) { return found; }
      var made = newId("s");
      localStorage.setItem(key, made);
      return made;
    } catch (e) {
      return newId("s");
    }
  }

  function newId(prefix) {
    if (window.crypto && crypto.randomUUID) { return prefix + "_" + crypto.randomUUID(); }
    return prefix + "_" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }

  function request(method, path, body) {
    var init = { method: method, headers: { Accept: "application/json" }, keepalive: method === "POST" };
    if (key) { init.headers.Authorization = "Bearer " + key; }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(api + path, init).then(function (res) {
      if (!res.ok) {
        return res.text().then(function (text) {
          throw new Error(method + " " + path + " -> " + res.status + " " + text);
        });
      }
      return res.status === 204 ? null : res.json();
    });
  }

  function track(type, sku, extra) {
    var event = {
      event_id: newId("ev"),
      type: type,
      session_id: session,
      timestamp: new Date().toISOString()
    };
    if (customer) { event.customer_id = customer; }
    if (channel) { event.channel = channel; }
    if (sku) { event.sku = sku; }
    if (extra && extra.recommendationId) { event.recommendation_id = extra.recommendationId; }
    if (extra && extra.query) { event.query = extra.query; }
    return request("POST", "/v1/events", [event]);
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      if (params[k] !== null && params[k] !== undefined && params[k] !== "") {
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k]));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(amount);
    } catch (e) {
      return amount.toFixed(2) + " " + currency;
    }
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function card(item, rec, link) {
    var a = el("a", "cw-card");
    a.href = link ? link.replace("{sku}", encodeURIComponent(item.sku)) : "#";
    a.dataset.sku = item.sku;
    a.appendChild(el("span", "cw-category", item.category));
    a.appendChild(el("span", "cw-title", item.title));
    var price = el("span", "cw-price", money(item.price, item.currency));
    if (item.price < item.list_price) {
      price.appendChild(el("s", "cw-list-price", money(item.list_price, item.currency)));
    }
    a.appendChild(price);
    var button = el("button", "cw-add", "Add to cart");
    button.type = "button";
    a.appendChild(button);
    a.addEventListener("click", function (ev) {
      var adding = ev.target === button;
      ev.preventDefault();
      var sent = track(adding ? "add_to_cart" : "view", item.sku, { recommendationId: rec.recommendation_id });
      a.dispatchEvent(new CustomEvent(adding ? "cartwise:add-to-cart" : "cartwise:click", {
        bubbles: true,
        detail: { sku: item.sku, recommendationId: rec.recommendation_id, widget: rec.widget }
      }));
      if (adding) {
        button.textContent = "Added";
        button.disabled = true;
      } else if (link) {
        var go = function () { location.href = a.href; };
        sent.then(go, go);
      }
    });
    return a;
  }

  function render(node) {
    var widget = node.dataset.cartwiseWidget;
    node.dataset.cartwiseState = "loading";
    // a signed-in customer by id; an anonymous shopper by this session alone
    var path = "/v1/recommendations" + (customer ? "/" + encodeURIComponent(customer) : "") + query({
      widget: widget,
      k: node.dataset.k,
      category: node.dataset.category,
      context_sku: node.dataset.contextSku,
      session_id: session,
      channel: channel
    });
    var rec;
    return request("GET", path)
      .then(function (answer) {
        rec = answer;
        if (!rec.items.length) { return { cards: [] }; }
        return request("GET", "/v1/storefront/cards" + query({
          skus: rec.items.map(function (i) { return i.sku; }).join(","),
          customer_id: customer,
          channel: channel
        }));
      })
      .then(function (answer) {
        var list = el("div", "cw-items");
        answer.cards.forEach(function (item) { list.appendChild(card(item, rec, node.dataset.link)); });
        node.replaceChildren(list);
        node.dataset.recommendationId = rec.recommendation_id;
        node.dataset.cartwiseState = answer.cards.length ? "ready" : "empty";
      })
      .catch(function (err) {
        node.dataset.cartwiseState = "error";
        if (window.console) { console.warn("cartwise widget " + widget + ": " + err.message); }
      });
  }

  function refresh() {
    var nodes = document.querySelectorAll("[data-cartwise-widget]");
    return Promise.all(Array.prototype.map.call(nodes, render));
  }

  window.cartwise = { track: track, refresh: refresh, sessionId: session, customerId: customer };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", refresh);
  } else {
    refresh();
  }
})();
