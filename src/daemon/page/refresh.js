(function () {
  "use strict";
  // Marks the page as scripted (what the browser test reads).
  document.documentElement.classList.add("js");
  var every = 1000 * (Number(document.body.getAttribute("data-refresh")) || 30);
  // Reload for fresh figures, but not under a reader: never while the tab
  // is hidden, a <details> is open, or focus is in the filter form.
  function busy() {
    var a = document.activeElement;
    return document.hidden || document.querySelector("details[open]") !== null ||
      (a !== null && a.closest !== undefined && a.closest("form") !== null);
  }
  function tick() {
    if (busy()) {
      window.setTimeout(tick, every);
    } else {
      window.location.reload();
    }
  }
  window.setTimeout(tick, every);
})();
