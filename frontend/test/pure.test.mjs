import { test } from "node:test";
import assert from "node:assert/strict";
import { strFromU8, unzipSync } from "fflate";
import { subjectEntries, subjectProblems, subjectText } from "../src/subject.js";
import { buildZip, fileBaseName, fileNames, readmeText } from "../src/files.js";
import { generatePassword, passwordProblem } from "../src/password.js";
import { downloadEventUrl, failureMessage } from "../src/api.js";
import { pemBlocks, pemDecode, pemEncode, toHex } from "../src/encoding.js";
import { POLICY_SUBJECT } from "./helpers.mjs";

test("subject: O, OU, CN in the order of the openssl command", () => {
  assert.deepEqual(
    subjectEntries(POLICY_SUBJECT).map((e) => [e.short, e.oid, e.value]),
    [
      ["O", "2.5.4.10", "Example Inc."],
      ["OU", "2.5.4.11", "API Developers"],
      ["CN", "2.5.4.3", "portal-user-42"],
    ],
  );
  assert.equal(subjectText(subjectEntries(POLICY_SUBJECT)), "O=Example Inc., OU=API Developers, CN=portal-user-42");
});

test("subject: empty O and OU are left out", () => {
  assert.deepEqual(
    subjectEntries({ common_name: "u1", organization: "", organizational_unit: "" }).map((e) => e.short),
    ["CN"],
  );
  assert.deepEqual(subjectEntries({ common_name: "u1", organization: "Org", organizational_unit: "" }).map((e) => e.short), ["O", "CN"]);
});

test("subject: no common name is an error", () => {
  assert.throws(() => subjectEntries({ common_name: "" }));
  assert.throws(() => subjectEntries(null));
});

test("subject problems of a pasted CSR", () => {
  const ok = [
    { oid: "2.5.4.10", value: "Example Inc." },
    { oid: "2.5.4.11", value: "API Developers" },
    { oid: "2.5.4.3", value: "portal-user-42" },
  ];
  assert.deepEqual(subjectProblems(ok, POLICY_SUBJECT), []);
  assert.equal(subjectProblems([ok[0], ok[1], { oid: "2.5.4.3", value: "someone-else" }], POLICY_SUBJECT).length, 1);
  assert.match(subjectProblems([ok[0], ok[2]], POLICY_SUBJECT)[0], /OU is missing/);
  assert.match(subjectProblems([...ok, { oid: "2.5.4.6", value: "US" }], POLICY_SUBJECT)[0], /2\.5\.4\.6="US" is not allowed/);
});

test("file names are safe and keep the name recognisable", () => {
  assert.equal(fileBaseName("laptop"), "laptop");
  assert.equal(fileBaseName("My Laptop (work)"), "My-Laptop-work");
  assert.equal(fileBaseName("../../etc/passwd"), "etc-passwd");
  assert.equal(fileBaseName("café crème"), "cafe-creme");
  assert.equal(fileBaseName("   "), "client-certificate");
  assert.equal(fileBaseName("日本"), "client-certificate");
  assert.equal(fileBaseName("x".repeat(100)).length, 64);
  assert.deepEqual(fileNames("laptop"), {
    base: "laptop",
    key: "laptop.key",
    certificate: "laptop.crt",
    pkcs12: "laptop.p12",
    zip: "laptop.zip",
    readme: "README.txt",
  });
});

test("README shows curl and requests with the first API hostname and warns about the key", () => {
  const text = readmeText({ name: "laptop", hostname: "api.example.com", fingerprint: "ab".repeat(32), expiresOn: "2027-01-01T00:00:00Z" });
  assert.ok(text.includes("curl --cert laptop.crt --key laptop.key https://api.example.com/"));
  assert.ok(text.includes('requests.get("https://api.example.com/", cert=("laptop.crt", "laptop.key"))'));
  assert.match(text, /exists only in these files/);
  assert.ok(text.includes("ab".repeat(32)));
  assert.ok(readmeText({ name: "x" }).includes("https://<api-hostname>/"));
});

const PORTAL_CA = {
  kind: "portal_ca",
  name: "Example API CA",
  ca_certificate_url: "https://portal.example.com/pki/ca-3.pem",
  crl_url: "https://portal.example.com/pki/ca-3.crl",
};
const MANAGED_CA = { kind: "cloudflare_managed", name: "Cloudflare managed CA", ca_certificate_url: null, crl_url: null };
const ORIGIN_HEADING = "For the API's operators: checking this certificate at an origin";

test("README of a portal-CA certificate tells origins where the CA and its CRL are", () => {
  const text = readmeText({ name: "laptop", hostname: "api.example.com", issuer: PORTAL_CA });
  const section = text.slice(text.indexOf(ORIGIN_HEADING));
  assert.ok(text.includes(ORIGIN_HEADING));
  assert.match(section, /"Example API CA"/);
  assert.match(section, /CA certificate \(PEM\) +https:\/\/portal\.example\.com\/pki\/ca-3\.pem\n/);
  assert.match(section, /CRL \(DER\) +https:\/\/portal\.example\.com\/pki\/ca-3\.crl\n/);
  assert.match(section, /CRL \(PEM\) +https:\/\/portal\.example\.com\/pki\/ca-3\.crl\.pem\n/);
});

test("README: the client's instructions are the same whoever issued; only a portal CA adds the origin section", () => {
  const base = { name: "laptop", hostname: "api.example.com", fingerprint: "ab".repeat(32), expiresOn: "2027-01-01T00:00:00Z" };
  const plain = readmeText(base);
  const managed = readmeText({ ...base, issuer: MANAGED_CA });
  const portal = readmeText({ ...base, issuer: PORTAL_CA });
  assert.equal(managed, plain, "Cloudflare's managed CA cannot be downloaded: nothing to tell origins");
  assert.ok(!plain.includes(ORIGIN_HEADING));
  assert.ok(portal.startsWith(plain), "the client's part comes first, unchanged");
  // A portal CA the API describes without its URLs gets no section rather than one with "null" in it.
  assert.equal(readmeText({ ...base, issuer: { ...PORTAL_CA, crl_url: null } }), plain);
});

test("zip holds the files byte for byte", () => {
  const bin = new Uint8Array([0, 1, 2, 255]);
  const zip = buildZip({ "a.key": "KEY\n", "a.p12": bin, "README.txt": "hello" });
  const files = unzipSync(zip);
  assert.deepEqual(Object.keys(files).sort(), ["README.txt", "a.key", "a.p12"]);
  assert.equal(strFromU8(files["a.key"]), "KEY\n");
  assert.deepEqual(files["a.p12"], bin);
});

test("generated passwords are long, random and unambiguous", () => {
  const a = generatePassword(20);
  const b = generatePassword(20);
  assert.equal(a.length, 20);
  assert.notEqual(a, b);
  assert.match(a, /^[A-HJ-NP-Za-km-z2-9]+$/);
  assert.equal(passwordProblem(a, a), null);
  assert.match(passwordProblem("short", "short"), /at least 8/);
  assert.match(passwordProblem("longenough", "different1"), /do not match/);
  assert.match(passwordProblem("", ""), /Choose/);
});

test("API error messages", () => {
  assert.equal(failureMessage({ ok: false, status: 400, data: { detail: "CSR subject is wrong." } }), "CSR subject is wrong.");
  assert.match(failureMessage({ ok: false, status: 0, data: null, networkError: true }), /Network error/);
  assert.match(failureMessage({ ok: false, status: 503, data: null }), /Cloudflare is unavailable/);
  assert.equal(failureMessage({ ok: false, status: 400, data: { name: ["This field is required."] } }), "name: This field is required.");
  assert.match(failureMessage({ ok: false, status: 500, data: null }), /HTTP 500/);
  assert.equal(downloadEventUrl("/api/v1/certificates/{id}/downloads/", 17), "/api/v1/certificates/17/downloads/");
  assert.equal(downloadEventUrl("/api/v1/certificates/%7Bid%7D/downloads/", 17), "/api/v1/certificates/17/downloads/");
});

test("PEM round trip and block search", () => {
  const der = new Uint8Array(100).map((_, i) => i);
  const pem = pemEncode(der, "CERTIFICATE");
  assert.match(pem, /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+\n-----END CERTIFICATE-----\n$/);
  assert.equal(toHex(pemDecode(`junk\n${pem}more`, "CERTIFICATE")), toHex(der));
  assert.equal(pemDecode(pem, "CERTIFICATE REQUEST"), null);
  assert.deepEqual(pemBlocks(pem + pemEncode(der, "PRIVATE KEY")).map((b) => b.label), ["CERTIFICATE", "PRIVATE KEY"]);
});
