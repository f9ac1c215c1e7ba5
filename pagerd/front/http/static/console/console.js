// pagerd's web console: bring the page's changing part up to date every few seconds.
// An element with data-refresh="URL" is replaced by what URL answers (the server renders it,
// escaped), every data-every milliseconds, while the page is visible. Signed out (401), the
// page reloads, which leads to the sign-in form. Nothing else runs here; no build step.
"use strict";

(function () {
  const live = document.querySelector("[data-refresh]");
  if (!live) {
    return;
  }
  const url = live.getAttribute("data-refresh");
  const every = Math.max(1000, parseInt(live.getAttribute("data-every"), 10) || 5000);
  let busy = false;

  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Requested-With": "pagerd-console" },
      });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      if (!response.ok) {
        live.setAttribute("data-stale", "true");
        return;
      }
      const html = await response.text();
      live.removeAttribute("data-stale");
      // Only when something changed: a button is not swapped under a finger for nothing.
      if (html !== live.getAttribute("data-last")) {
        live.setAttribute("data-last", html);
        if (!live.contains(document.activeElement) || document.activeElement === document.body) {
          live.innerHTML = html;
        }
      }
    } catch (error) {
      live.setAttribute("data-stale", "true");
    } finally {
      busy = false;
    }
  }

  live.setAttribute("data-last", "");
  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
