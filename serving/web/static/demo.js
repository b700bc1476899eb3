/* The demo product page: a view event when it opens, an add_to_cart event from its button. */
(function () {
  "use strict";
  var sku = document.currentScript.dataset.sku;
  function ready(fn) {
    if (window.cartwise) { fn(window.cartwise); } else { window.addEventListener("load", function () { fn(window.cartwise); }); }
  }
  ready(function (cw) {
    cw.track("view", sku);
    document.getElementById("add-to-cart").addEventListener("click", function (ev) {
      cw.track("add_to_cart", sku).then(function () {
        ev.target.disabled = true;
        document.getElementById("cart-note").hidden = false;
      });
    });
  });
})();
