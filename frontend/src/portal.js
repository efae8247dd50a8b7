// Small behaviours shared by the portal's pages (dashboard, certificate detail, API tokens): copy
// buttons, and status that refreshes itself while a certificate is in flight.
import { setupCopyButtons } from "./portal/copy-buttons.js";
import { pollUntilChanged } from "./portal/pending.js";

setupCopyButtons(document);

const pending = Array.from(document.querySelectorAll("[data-pending][data-status-url]"));
if (pending.length) pollUntilChanged(pending, { reload: () => window.location.reload() });
