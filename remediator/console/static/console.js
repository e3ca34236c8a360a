// The console's one enhancement: each element with data-refresh is fetched again every
// few seconds and replaced by the server's fresh rendering (escaped there, parsed here
// with DOMParser, whose scripts never run). No framework; the page works without it.
"use strict";
(function () {
  const EVERY_MS = 5000;
  async function refresh(element) {
    const response = await fetch(element.dataset.refresh, {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      redirect: "error",
    });
    if (!response.ok) {
      return;
    }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById(element.id);
    if (fresh !== null) {
      element.replaceWith(document.importNode(fresh, true));
      const stamp = document.getElementById("refreshed");
      if (stamp !== null) {
        stamp.textContent = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      }
    }
  }
  function tick() {
    for (const element of document.querySelectorAll("[data-refresh]")) {
      refresh(element).catch(function () {});
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("[data-refresh]") !== null) {
      window.setInterval(tick, EVERY_MS);
    }
  });
})();
