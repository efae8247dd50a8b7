// JSON calls to the portal (same origin, session cookie, Django CSRF header).

/**
 * @returns {Promise<{ok: boolean, status: number, data: any, networkError?: boolean}>}
 */
export async function requestJson(url, { method = "GET", body, csrfToken } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrfToken) headers["X-CSRFToken"] = csrfToken;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, status: 0, data: null, networkError: true };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

/** A message for the user from a failed requestJson result. */
export function failureMessage(result) {
  if (result.networkError) {
    return "Network error: the portal could not be reached. Check your connection and try again.";
  }
  const data = result.data;
  if (data && typeof data === "object") {
    if (typeof data.detail === "string" && data.detail.trim()) return data.detail;
    // Field errors ({"name": ["..."]}), in case the API answers in that form.
    const parts = [];
    for (const [field, value] of Object.entries(data)) {
      const text = Array.isArray(value) ? value.filter((v) => typeof v === "string").join(" ") : typeof value === "string" ? value : "";
      if (text) parts.push(field === "non_field_errors" ? text : `${field}: ${text}`);
    }
    if (parts.length) return parts.join(" ");
  }
  if (result.status === 502 || result.status === 503) {
    return "Cloudflare is unavailable right now. Nothing was issued; please try again in a few minutes.";
  }
  if (result.status === 401 || result.status === 403) {
    return "You are not signed in any more, or this page is out of date. Reload the page and try again.";
  }
  return `The portal answered with an unexpected error (HTTP ${result.status}).`;
}

/** The audit URL for one certificate from the template with a literal {id}. */
export function downloadEventUrl(template, id) {
  return String(template).replace(/\{id\}|%7Bid%7D/i, encodeURIComponent(String(id)));
}
