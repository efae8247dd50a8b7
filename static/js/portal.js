// Small behaviours shared by the portal's pages: copy buttons, and status that refreshes itself
// while a certificate is in flight (pending revocation or reactivation, issuance unconfirmed).
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy[data-copy]");
    if (!button) return;
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  var pending = Array.prototype.slice.call(document.querySelectorAll("[data-certificate-id][data-pending]"));
  if (!pending.length) return;

  var POLL_MS = 5000;
  function poll() {
    Promise.all(pending.map(function (element) {
      var id = element.getAttribute("data-certificate-id");
      return fetch("/api/v1/certificates/" + id, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) { return body && body.status !== element.getAttribute("data-status"); })
        .catch(function () { return false; });
    })).then(function (changed) {
      if (changed.some(Boolean)) window.location.reload();
      else setTimeout(poll, POLL_MS);
    });
  }
  setTimeout(poll, POLL_MS);
})();
