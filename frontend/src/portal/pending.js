// Status that refreshes itself while a certificate is in flight (pending revocation or reactivation,
// issuance unconfirmed): each element marked data-pending carries the status it shows (data-status)
// and the API URL that tells the current one (data-status-url), so this code knows no URL itself.
import { requestJson } from "../api.js";

export const POLL_MS = 5000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether the certificate behind the element has left the status shown; false when the API cannot tell. */
export async function statusChanged(element, request = requestJson) {
  const result = await request(element.dataset.statusUrl);
  return Boolean(result.ok && result.data && result.data.status !== element.dataset.status);
}

/** Asks every POLL_MS until one of the elements' certificates has changed, then calls reload once. */
export async function pollUntilChanged(elements, { reload, request = requestJson, wait = sleep }) {
  for (;;) {
    await wait(POLL_MS);
    const changed = await Promise.all(elements.map((element) => statusChanged(element, request)));
    if (changed.some(Boolean)) {
      reload();
      return;
    }
  }
}
