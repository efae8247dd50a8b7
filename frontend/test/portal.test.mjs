// The shared page script (frontend/src/portal/): pending certificates poll the URL their markup names.
import { test } from "node:test";
import assert from "node:assert/strict";
import { POLL_MS, pollUntilChanged, statusChanged } from "../src/portal/pending.js";

const pendingRow = (id, status = "pending_revocation") => ({ dataset: { statusUrl: `/api/v1/certificates/${id}`, status } });
const answering = (statuses) => async (url) => (url in statuses ? statuses[url] : { ok: false, status: 404, data: null });

test("a status counts as changed only when the API answers with another one", async () => {
  const request = answering({
    "/api/v1/certificates/1": { ok: true, data: { status: "revoked" } },
    "/api/v1/certificates/2": { ok: true, data: { status: "pending_revocation" } },
    "/api/v1/certificates/3": { ok: false, status: 0, data: null, networkError: true },
  });
  assert.equal(await statusChanged(pendingRow(1), request), true);
  assert.equal(await statusChanged(pendingRow(2), request), false);
  assert.equal(await statusChanged(pendingRow(3), request), false);
});

test("polling asks each element's own URL every 5 s and reloads once, when one has changed", async () => {
  const asked = [];
  const waits = [];
  let polls = 0;
  let reloads = 0;
  const request = async (url) => {
    asked.push(url);
    const changed = polls >= 2 && url.endsWith("/9");
    return { ok: true, data: { status: changed ? "active" : "pending_reactivation" } };
  };
  const wait = async (ms) => {
    waits.push(ms);
    polls += 1;
  };
  await pollUntilChanged([pendingRow(8, "pending_reactivation"), pendingRow(9, "pending_reactivation")], {
    request,
    wait,
    reload: () => (reloads += 1),
  });
  assert.deepEqual(waits, [POLL_MS, POLL_MS]);
  assert.equal(POLL_MS, 5000);
  assert.deepEqual(asked, ["/api/v1/certificates/8", "/api/v1/certificates/9", "/api/v1/certificates/8", "/api/v1/certificates/9"]);
  assert.equal(reloads, 1);
});
