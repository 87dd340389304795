// posoutbox console: refreshes the parts of a page marked with data-poll.
//
// A marked element names the URL of its fragment in data-poll. The fragment's
// root element carries data-active="1" while a run is going on. The element is
// then refreshed every data-poll-seconds, and five times less often otherwise,
// so a run started from another browser still shows up. Without JavaScript the
// page works the same, with a Refresh link instead.
(function () {
  "use strict";

  function watch(region) {
    var url = region.getAttribute("data-poll");
    var seconds = Number(region.getAttribute("data-poll-seconds") || "2");
    var active = region.getAttribute("data-active") === "1";
    var statusId = region.getAttribute("data-status-target");
    var status = statusId ? document.getElementById(statusId) : null;

    function schedule(delaySeconds) {
      window.setTimeout(refresh, delaySeconds * 1000);
    }

    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("[data-fragment]");
          if (fresh === null) {
            throw new Error("fragment missing");
          }
          // Replacing unchanged content would move keyboard focus for nothing.
          if (fresh.innerHTML !== region.innerHTML) {
            region.innerHTML = fresh.innerHTML;
          }
          // A short summary goes to a live region outside the refreshed part,
          // so a screen reader announces the change and not the whole table.
          var summary = fresh.getAttribute("data-status") || "";
          if (status !== null && status.textContent !== summary) {
            status.textContent = summary;
          }
          active = fresh.getAttribute("data-active") === "1";
          region.setAttribute("data-active", active ? "1" : "0");
          schedule(active ? seconds : seconds * 5);
        })
        .catch(function () {
          schedule(seconds * 5);
        });
    }

    schedule(active ? seconds : seconds * 5);
  }

  document.querySelectorAll("[data-poll]").forEach(watch);
})();
