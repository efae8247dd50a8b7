// The networks page: "add my current address" buttons, "show" buttons that select the line a problem names,
// and the "in force" status, refreshed in place while the firewall sync has not applied the list yet (a reload
// would throw away what the user is typing).
import { byId } from "./dom.js";
import { lineRange, withNetwork } from "./networks/lines.js";
import { pollUntilChanged } from "./portal/pending.js";

const textarea = byId("networks");
const announce = byId("networks-added");

function addNetwork(network) {
  const { text, added } = withNetwork(textarea.value, network);
  textarea.value = text;
  if (announce) announce.textContent = added ? `Added ${network}. Save to apply it.` : `${network} is already in the list.`;
  textarea.focus();
  textarea.setSelectionRange(text.length, text.length);
}

function selectLine(number) {
  const range = lineRange(textarea.value, number);
  if (!range) return;
  textarea.focus();
  textarea.setSelectionRange(range[0], range[1]);
}

function setUpAddButtons() {
  for (const button of document.querySelectorAll("button[data-add-network]")) {
    button.hidden = false; // hidden in the markup: without this script they would do nothing
    button.addEventListener("click", () => addNetwork(button.dataset.addNetwork));
  }
}

function setUpLineButtons() {
  for (const item of document.querySelectorAll("#networks-problems li[data-line]")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link networks-show-line";
    button.textContent = `Show line ${item.dataset.line}`;
    button.addEventListener("click", () => selectLine(Number(item.dataset.line)));
    item.append(" ", button);
  }
}

/** Replaces the status block with the one a fresh copy of this page has; keeps polling while it is pending. */
async function refreshStatus() {
  let fresh = null;
  try {
    const response = await fetch(window.location.pathname, { credentials: "same-origin" });
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    fresh = page.querySelector('[data-testid="allowlist-status"]');
  } catch {
    fresh = null;
  }
  const current = document.querySelector('[data-testid="allowlist-status"]');
  if (fresh && current) current.replaceWith(fresh);
  watchStatus(); // the old block (still pending) if the page could not be fetched: try again on the next change
}

function watchStatus() {
  const pending = document.querySelector('[data-testid="allowlist-status"][data-pending][data-status-url]');
  if (pending) pollUntilChanged([pending], { reload: refreshStatus });
}

if (textarea) {
  setUpAddButtons();
  setUpLineButtons();
}
watchStatus();
