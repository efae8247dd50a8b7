// The logic of the new-certificate page's modules (frontend/src/new-certificate/), without a DOM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync, strFromU8 } from "fflate";
import { createCsr, generateKeyPair } from "../src/keys.js";
import { pemDecode } from "../src/encoding.js";
import { recordDownload, requestCertificate } from "../src/new-certificate/certificate-api.js";
import { zipFiles } from "../src/new-certificate/downloads.js";
import { UserError } from "../src/new-certificate/errors.js";
import { formatDate, makeCertificate } from "../src/new-certificate/generate.js";
import { NAME_MAX_LENGTH, nameProblem } from "../src/new-certificate/name.js";
import { pastedCsrPem } from "../src/new-certificate/paste.js";
import { fetchPolicy, keyTypeOptions, mayIssue, standing, validityLabel, validityOptions } from "../src/new-certificate/policy.js";
import { StepError, runStep } from "../src/new-certificate/progress.js";
import { tabIndexAfterKey } from "../src/new-certificate/tabs.js";
import { buildZip } from "../src/files.js";
import { OPENSSL, POLICY_SUBJECT, openssl, tempDir } from "./helpers.mjs";
import { recordingProgress, stubFetch } from "./fetch-stub.mjs";

const noOpenssl = OPENSSL ? false : "openssl not found";
const ISSUING = { issueUrl: "/api/v1/certificates", csrfToken: "csrf-123" };

test("validity choices: labels, the policy's default, else the last choice, else a year", () => {
  assert.equal(validityLabel(365), "365 days (1 year)");
  assert.equal(validityLabel(30), "30 days (1 month)");
  assert.equal(validityLabel(90), "90 days (3 months)");
  assert.equal(validityLabel(400), "400 days");
  assert.deepEqual(validityOptions({ choices: [30, 90, 365], default: 90 }).selected, "90");
  assert.deepEqual(validityOptions({ choices: [30, 90], default: 365 }).selected, "90");
  assert.deepEqual(validityOptions(undefined), { options: [{ value: "365", label: "365 days (1 year)" }], selected: "365" });
});

test("key types: only those the browser can make, the policy's default if offered", () => {
  const policy = { key_types: [{ id: "ed448", label: "Ed448" }, { id: "ec-p384", label: "P-384" }, { id: "rsa-2048" }], default_key_type: "rsa-2048" };
  assert.deepEqual(keyTypeOptions(policy), {
    options: [{ value: "ec-p384", label: "P-384" }, { value: "rsa-2048", label: "RSA 2048" }],
    selected: "rsa-2048",
  });
  assert.equal(keyTypeOptions({ ...policy, default_key_type: "ed448" }).selected, "ec-p384");
  assert.equal(keyTypeOptions({ key_types: [{ id: "ed448" }] }).options.length, 0);
  assert.equal(keyTypeOptions({}).options.length, 5, "no list in the policy: every type this page can make");
});

test("standing: N of M, and whether that is the most allowed", () => {
  assert.deepEqual(standing({ active_certificates: 2, max_active_certificates: 5 }), { active: "2 of 5", held: 2, full: false });
  assert.equal(standing({ active_certificates: 5, max_active_certificates: 5 }).full, true);
  assert.equal(standing({ active_certificates: 1 }), null);
});

test("may issue: only when admitted, under the maximum and with room in the zone", () => {
  const open = { active_certificates: 2, max_active_certificates: 5, zone_room: 10, admission: { admitted: true } };
  assert.equal(mayIssue(open), true);
  assert.equal(mayIssue({ ...open, active_certificates: 5 }), false, "at the user's maximum");
  assert.equal(mayIssue({ ...open, zone_room: 0 }), false, "the zone is full");
  assert.equal(mayIssue({ ...open, zone_room: null }), true, "no zone capacity configured");
  assert.equal(mayIssue({ ...open, admission: { admitted: false } }), false, "waiting for staff");
});

test("policy: loaded with its subject, or a UserError that says why not", async (t) => {
  const calls = stubFetch(t, [
    { body: { subject: POLICY_SUBJECT } },
    { status: 503, body: null },
    { body: { subject: { common_name: "" } } },
  ]);
  const { policy, entries } = await fetchPolicy("/api/v1/policy");
  assert.equal(calls[0].url, "/api/v1/policy");
  assert.deepEqual(policy.subject, POLICY_SUBJECT);
  assert.deepEqual(entries.map((e) => e.short), ["O", "OU", "CN"]);
  await assert.rejects(fetchPolicy("/api/v1/policy"), (e) => e instanceof UserError && /^Could not load the certificate policy: Cloudflare is unavailable.* Reload the page/.test(e.message));
  await assert.rejects(fetchPolicy("/api/v1/policy"), UserError);
});

test("names: required and at most 100 characters", () => {
  assert.match(nameProblem(""), /Give the certificate a name/);
  assert.equal(nameProblem("x".repeat(NAME_MAX_LENGTH)), null);
  assert.match(nameProblem("x".repeat(NAME_MAX_LENGTH + 1)), /at most 100 characters/);
});

test("tabs: arrows wrap around, Home and End jump, other keys do nothing", () => {
  assert.equal(tabIndexAfterKey("ArrowRight", 1, 2), 0);
  assert.equal(tabIndexAfterKey("ArrowLeft", 0, 2), 1);
  assert.equal(tabIndexAfterKey("Home", 1, 2), 0);
  assert.equal(tabIndexAfterKey("End", 0, 2), 1);
  assert.equal(tabIndexAfterKey("Enter", 0, 2), null);
});

test("progress: a step is active then done; a failure marks it failed and says what was being done", async () => {
  const progress = recordingProgress();
  assert.equal(await runStep(progress, "key", async () => 42), 42);
  const broken = await runStep(progress, "csr", async () => {
    throw new Error("boom");
  }).catch((e) => e);
  const refused = await runStep(progress, "issue", async () => {
    throw new UserError("Refused.");
  }).catch((e) => e);
  assert.deepEqual(progress.seen, ["key:active", "key:done", "csr:active", "csr:error", "issue:active", "issue:error"]);
  assert.ok(broken instanceof StepError);
  assert.equal(broken.userMessage, "Something went wrong while building the certificate request: boom");
  assert.equal(refused.userMessage, "Refused.");
});

test("requesting a certificate sends the CSR, validity and name with the CSRF token", async (t) => {
  const calls = stubFetch(t, [{ status: 202, body: { id: 7, status: "pending_issuance" } }, { status: 409, body: { detail: "You are at your maximum." } }]);
  const answer = await requestCertificate({ ...ISSUING, csrPem: "CSR", validityDays: 90, name: "laptop" });
  assert.deepEqual(calls[0], {
    url: "/api/v1/certificates",
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": "csrf-123" },
    body: { csr: "CSR", validity_days: 90, name: "laptop" },
  });
  assert.deepEqual(answer, { issued: { id: 7, status: "pending_issuance" }, certificateDer: null, certificatePem: null });
  await assert.rejects(
    requestCertificate({ ...ISSUING, csrPem: "CSR", validityDays: 90, name: "laptop" }),
    (e) => e instanceof UserError && e.message === "The certificate was not issued: You are at your maximum.",
  );
});

test("an answer whose certificate is not PEM is refused", async (t) => {
  stubFetch(t, [{ status: 201, body: { id: 7, certificate: "not a certificate" } }]);
  await assert.rejects(requestCertificate({ ...ISSUING, csrPem: "CSR", validityDays: 90, name: "x" }), /no PEM certificate/);
});

test("downloads are recorded at the certificate's audit URL, and a lost record is ignored", async (t) => {
  const calls = stubFetch(t, [{ status: 204 }, new TypeError("offline")]);
  const events = { urlTemplate: "/api/v1/certificates/{id}/download-events", csrfToken: "csrf-123" };
  recordDownload(events, 7, "pkcs12");
  recordDownload(events, undefined, "key"); // nothing to record against
  recordDownload(events, 8, "zip");
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(calls.map((c) => [c.url, c.method, c.body]), [
    ["/api/v1/certificates/7/download-events", "POST", { format: "pkcs12" }],
    ["/api/v1/certificates/8/download-events", "POST", { format: "zip" }],
  ]);
});

test("making a certificate: key, CSR, then only the CSR is sent; an accepted request keeps the key", async (t) => {
  const calls = stubFetch(t, [{ status: 202, body: { id: 3, name: "build-box", status: "pending_issuance" } }]);
  const progress = recordingProgress();
  const generated = await makeCertificate({
    keyTypeId: "ec-p256",
    subject: POLICY_SUBJECT,
    request: { ...ISSUING, validityDays: 30, name: "typed name" },
    progress,
    paint: async () => {},
  });
  assert.deepEqual(progress.seen, ["key:active", "key:done", "csr:active", "csr:done", "issue:active", "issue:done"]);
  assert.deepEqual(Object.keys(calls[0].body).sort(), ["csr", "name", "validity_days"]);
  assert.match(calls[0].body.csr, /^-----BEGIN CERTIFICATE REQUEST-----/);
  assert.doesNotMatch(JSON.stringify(calls[0].body), /PRIVATE KEY/);
  assert.equal(generated.name, "build-box", "the portal's name for it wins");
  assert.equal(generated.certificateDer, null);
  assert.equal(generated.keySaved, false);
  assert.ok(generated.pkcs8.length > 100);
});

test("making a certificate refuses one that belongs to another key", { skip: noOpenssl }, async (t) => {
  const dir = tempDir(t);
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=someone-else",
    "-keyout", join(dir, "other.key"), "-out", join(dir, "other.crt"), "-days", "1"]);
  stubFetch(t, [{ status: 201, body: { id: 4, certificate: readFileSync(join(dir, "other.crt"), "utf8") } }]);
  const progress = recordingProgress();
  const failure = await makeCertificate({
    keyTypeId: "ec-p256", subject: POLICY_SUBJECT, request: { ...ISSUING, validityDays: 30, name: "x" }, progress, paint: async () => {},
  }).catch((e) => e);
  assert.ok(failure instanceof StepError);
  assert.equal(failure.step, "issue");
  assert.match(failure.userMessage, /does not belong to the key made in this browser/);
  assert.equal(progress.seen.at(-1), "issue:error");
});

test("a pasted CSR: private keys, other PEM, garbage and a foreign subject are refused; a good one is re-encoded", async () => {
  const keys = await generateKeyPair("ec-p256");
  const good = await createCsr(keys, "ec-p256", POLICY_SUBJECT);
  const foreign = await createCsr(keys, "ec-p256", { ...POLICY_SUBJECT, common_name: "someone-else" });
  assert.throws(() => pastedCsrPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", POLICY_SUBJECT), /This is a private key/);
  assert.throws(() => pastedCsrPem(`${good.pem}\n-----BEGIN EC PRIVATE KEY-----\n`, POLICY_SUBJECT), /This is a private key/);
  assert.throws(() => pastedCsrPem("hello", POLICY_SUBJECT), /in PEM form/);
  assert.throws(() => pastedCsrPem("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", POLICY_SUBJECT), /could not be read/);
  assert.throws(() => pastedCsrPem(foreign.pem, POLICY_SUBJECT), (e) => e instanceof UserError && /does not match the policy/.test(e.message));
  const pem = pastedCsrPem(`some text before\r\n${good.pem.replace(/\n/g, "\r\n")}`, POLICY_SUBJECT);
  assert.deepEqual(pemDecode(pem, "CERTIFICATE REQUEST"), pemDecode(good.pem, "CERTIFICATE REQUEST"));
});

test("the zip holds the key, certificate, PKCS#12 and a README naming the hostname", () => {
  const generated = {
    name: "build box",
    pkcs8: new Uint8Array([1, 2, 3]),
    certificatePem: "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n",
    issued: { fingerprint_sha256: "ab".repeat(32), expires_on: "2030-01-01T00:00:00Z" },
  };
  const files = unzipSync(buildZip(zipFiles({ generated, pkcs12: new Uint8Array([9, 9]), hostname: "api.example.com", legacyPkcs12: false })));
  assert.deepEqual(Object.keys(files).sort(), ["README.txt", "build-box.crt", "build-box.key", "build-box.p12"]);
  assert.match(strFromU8(files["build-box.key"]), /^-----BEGIN PRIVATE KEY-----\nAQID\n/);
  assert.equal(strFromU8(files["build-box.crt"]), generated.certificatePem);
  assert.deepEqual([...files["build-box.p12"]], [9, 9]);
  assert.match(strFromU8(files["README.txt"]), /api\.example\.com/);
});

test("the zip's README carries the origin section when the API says a portal CA issued the certificate", () => {
  const issuer = { kind: "portal_ca", name: "Example API CA", ca_certificate_url: "https://p.example/pki/ca-1.pem", crl_url: "https://p.example/pki/ca-1.crl" };
  const generated = {
    name: "laptop",
    pkcs8: new Uint8Array([1, 2, 3]),
    certificatePem: "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n",
    issued: { fingerprint_sha256: "ab".repeat(32), expires_on: "2030-01-01T00:00:00Z", issuer },
  };
  const readme = (answer) => zipFiles({ generated: { ...generated, issued: answer }, pkcs12: new Uint8Array([9]), hostname: "api.example.com", legacyPkcs12: false })["README.txt"];
  assert.match(readme(generated.issued), /checking this certificate at an origin[\s\S]*https:\/\/p\.example\/pki\/ca-1\.crl\n/);
  assert.doesNotMatch(readme({ ...generated.issued, issuer: { kind: "cloudflare_managed", name: "Cloudflare managed CA", ca_certificate_url: null, crl_url: null } }), /at an origin/);
});

test("dates show in UTC; a value that is no date shows as it is", () => {
  assert.equal(formatDate("2030-01-02T03:04:05Z"), "2030-01-02 03:04 UTC");
  assert.equal(formatDate("soon"), "soon");
  assert.equal(formatDate(null), "");
});
