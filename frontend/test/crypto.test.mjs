// Key + CSR + PKCS#12 generation in Node's WebCrypto, checked with Python's `cryptography` and openssl.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, randomBytes as nodeRandomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  KEY_TYPES,
  certificateMatchesKey,
  createCsr,
  csrSubject,
  exportPrivateKeyPkcs8,
  generateKeyPair,
  privateKeyPem,
} from "../src/keys.js";
import { buildPkcs12, PBKDF2_ITERATIONS } from "../src/pkcs12.js";
import { pkcs12Kdf, tripleDesCbcDecrypt, tripleDesCbcEncrypt } from "../src/pbe.js";
import { pemDecode, toBase64, toHex } from "../src/encoding.js";
import { OPENSSL, POLICY_SUBJECT, PYTHON, openssl, python, tempDir } from "./helpers.mjs";

const noPython = PYTHON ? false : "Python with `cryptography` not found (set PYTHON)";
const noOpenssl = OPENSSL ? false : "openssl not found";

const CHECK_CSR = `
import json, sys, base64
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec, rsa, padding
d = json.load(sys.stdin)
csr = x509.load_pem_x509_csr(d["pem"].encode())
key = csr.public_key()
print(json.dumps({
  "valid": csr.is_signature_valid,
  "rdns": [[(a.oid.dotted_string, a.value, a._type.name) for a in rdn] for rdn in csr.subject.rdns],
  "hash": csr.signature_hash_algorithm.name,
  "sigoid": csr.signature_algorithm_oid.dotted_string,
  "key": ("ec", key.curve.name) if isinstance(key, ec.EllipticCurvePublicKey) else ("rsa", key.key_size),
  "attributes": len(list(csr.attributes)),
  "extensions": len(list(csr.extensions)),
}))
`;

const EXPECTED = {
  "ec-p256": { key: ["ec", "secp256r1"], hash: "sha256", sigoid: "1.2.840.10045.4.3.2" },
  "ec-p384": { key: ["ec", "secp384r1"], hash: "sha384", sigoid: "1.2.840.10045.4.3.3" },
  "rsa-2048": { key: ["rsa", 2048], hash: "sha256", sigoid: "1.2.840.113549.1.1.11" },
  "rsa-3072": { key: ["rsa", 3072], hash: "sha256", sigoid: "1.2.840.113549.1.1.11" },
  "rsa-4096": { key: ["rsa", 4096], hash: "sha256", sigoid: "1.2.840.113549.1.1.11" },
};

test("every policy key type is supported", () => {
  assert.deepEqual(Object.keys(KEY_TYPES).sort(), Object.keys(EXPECTED).sort());
});

for (const keyType of Object.keys(EXPECTED)) {
  test(`CSR for ${keyType}: valid signature, exact subject, right algorithms`, { skip: noPython }, async () => {
    const keys = await generateKeyPair(keyType);
    const csr = await createCsr(keys, keyType, POLICY_SUBJECT);
    assert.match(csr.pem, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const r = python(CHECK_CSR, { pem: csr.pem });
    assert.equal(r.valid, true);
    assert.deepEqual(r.rdns, [
      [["2.5.4.10", "Example Inc.", "UTF8String"]],
      [["2.5.4.11", "API Developers", "UTF8String"]],
      [["2.5.4.3", "portal-user-42", "UTF8String"]],
    ]);
    assert.deepEqual(r.key, EXPECTED[keyType].key);
    assert.equal(r.hash, EXPECTED[keyType].hash);
    assert.equal(r.sigoid, EXPECTED[keyType].sigoid);
    assert.equal(r.attributes, 0);
    assert.equal(r.extensions, 0);
    // And PKI.js reads back what it wrote.
    assert.deepEqual(csrSubject(csr.der).map((e) => e.value), ["Example Inc.", "API Developers", "portal-user-42"]);
  });
}

test("CSR with only a common name", { skip: noPython }, async () => {
  const keys = await generateKeyPair("ec-p256");
  const csr = await createCsr(keys, "ec-p256", { common_name: "u-7", organization: "", organizational_unit: "" });
  const r = python(CHECK_CSR, { pem: csr.pem });
  assert.equal(r.valid, true);
  assert.deepEqual(r.rdns, [[["2.5.4.3", "u-7", "UTF8String"]]]);
});

test("the private key PEM is PKCS#8 and belongs to the CSR", { skip: noPython }, async () => {
  const keys = await generateKeyPair("ec-p256");
  const csr = await createCsr(keys, "ec-p256", POLICY_SUBJECT);
  const keyPem = privateKeyPem(await exportPrivateKeyPkcs8(keys.privateKey));
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const r = python(
    `
import json, sys
from cryptography import x509
from cryptography.hazmat.primitives import serialization as s
d = json.load(sys.stdin)
k = s.load_pem_private_key(d["key"].encode(), None)
c = x509.load_pem_x509_csr(d["csr"].encode())
f = (s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo)
print(json.dumps(k.public_key().public_bytes(*f) == c.public_key().public_bytes(*f)))
`,
    { key: keyPem, csr: csr.pem },
  );
  assert.equal(r, true);
});

// --- PKCS#12 ---------------------------------------------------------------------------------

/** A CA (openssl) signs a CSR made here; returns the pieces a PKCS#12 is made from. */
async function issued(t, keyType) {
  const dir = tempDir(t);
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "ca.key"),
    "-out", join(dir, "ca.crt"), "-subj", "/CN=Test CA", "-days", "30"]);
  const keys = await generateKeyPair(keyType);
  const csr = await createCsr(keys, keyType, POLICY_SUBJECT);
  writeFileSync(join(dir, "client.csr"), csr.pem);
  openssl(["x509", "-req", "-in", join(dir, "client.csr"), "-CA", join(dir, "ca.crt"), "-CAkey", join(dir, "ca.key"),
    "-set_serial", "4242", "-days", "30", "-out", join(dir, "client.crt")]);
  const certPem = readFileSync(join(dir, "client.crt"), "utf8");
  return { dir, keys, certPem, certDer: pemDecode(certPem, "CERTIFICATE"), pkcs8: await exportPrivateKeyPkcs8(keys.privateKey) };
}

const LOAD_P12 = `
import json, sys, base64
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12, Encoding, PublicFormat
d = json.load(sys.stdin)
data = base64.b64decode(d["p12"])
key, cert, extra = pkcs12.load_key_and_certificates(data, d["password"].encode())
p = pkcs12.load_pkcs12(data, d["password"].encode())
f = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
try:
    pkcs12.load_key_and_certificates(data, b"not the password")
    wrong = "accepted"
except ValueError:
    wrong = "rejected"
print(json.dumps({
  "cert_matches": cert == x509.load_pem_x509_certificate(d["cert"].encode()),
  "key_matches": key.public_key().public_bytes(*f) == cert.public_key().public_bytes(*f),
  "extra": len(extra),
  "friendly_name": p.cert.friendly_name.decode("utf-8") if p.cert.friendly_name else None,
  "wrong_password": wrong,
}))
`;

const PASSWORD = "correct horse battery";

for (const keyType of ["ec-p256", "rsa-2048"]) {
  for (const legacy of [false, true]) {
    const label = `${keyType}, ${legacy ? "legacy 3DES/SHA-1" : "modern AES-256/SHA-256"}`;
    test(`PKCS#12 ${label} opens with Python cryptography and openssl`, { skip: noPython || noOpenssl }, async (t) => {
      const { dir, certPem, certDer, pkcs8 } = await issued(t, keyType);
      const p12 = await buildPkcs12({ privateKeyPkcs8: pkcs8, certificateDer: certDer, password: PASSWORD, friendlyName: "laptop", legacy });

      const r = python(LOAD_P12, { p12: toBase64(p12), password: PASSWORD, cert: certPem });
      assert.deepEqual(r, { cert_matches: true, key_matches: true, extra: 0, friendly_name: "laptop", wrong_password: "rejected" });

      const file = join(dir, "client.p12");
      writeFileSync(file, p12);
      const info = openssl(["pkcs12", "-info", "-noout", "-passin", `pass:${PASSWORD}`, "-in", file]) +
        openssl(["pkcs12", "-info", "-nokeys", "-passin", `pass:${PASSWORD}`, "-in", file]);
      if (legacy) {
        assert.match(info, /MAC: sha1, Iteration 2048/);
        assert.match(info, /Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048/);
        assert.match(info, /PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048/);
      } else {
        assert.match(info, /MAC: sha256, Iteration 2048/);
        const pbes2 = `PBES2, PBKDF2, AES-256-CBC, Iteration ${PBKDF2_ITERATIONS}, PRF hmacWithSHA256`;
        assert.ok(info.includes(`Shrouded Keybag: ${pbes2}`), info);
        assert.ok(info.includes(`PKCS7 Encrypted data: ${pbes2}`), info);
        assert.ok(PBKDF2_ITERATIONS >= 100000);
      }
      const localKeyId = toHex(new Uint8Array(await crypto.subtle.digest("SHA-1", certDer))).toUpperCase().match(/../g).join(" ");
      assert.ok(info.includes(`localKeyID: ${localKeyId}`), info);
      assert.ok(info.includes("friendlyName: laptop"), info);
      assert.throws(() => openssl(["pkcs12", "-info", "-noout", "-passin", "pass:wrong password", "-in", file]));
    });
  }
}

test("PKCS#12 with a non-ASCII password and friendly name", { skip: noPython || noOpenssl }, async (t) => {
  const { certPem, certDer, pkcs8 } = await issued(t, "ec-p384");
  for (const legacy of [false, true]) {
    const password = "pässwörd-ünïcode";
    const p12 = await buildPkcs12({ privateKeyPkcs8: pkcs8, certificateDer: certDer, password, friendlyName: "Zoë's laptop", legacy });
    const r = python(LOAD_P12, { p12: toBase64(p12), password, cert: certPem });
    assert.equal(r.key_matches, true);
    assert.equal(r.friendly_name, "Zoë's laptop");
  }
});

test("PKCS#12 with an RSA 4096 key (bags larger than 1 KiB stay DER)", { skip: noPython || noOpenssl }, async (t) => {
  const { certPem, certDer, pkcs8 } = await issued(t, "rsa-4096");
  for (const legacy of [false, true]) {
    const p12 = await buildPkcs12({ privateKeyPkcs8: pkcs8, certificateDer: certDer, password: PASSWORD, friendlyName: "big", legacy });
    assert.equal(python(LOAD_P12, { p12: toBase64(p12), password: PASSWORD, cert: certPem }).key_matches, true);
  }
});

test("PKCS#12 refuses short passwords", async () => {
  await assert.rejects(buildPkcs12({ privateKeyPkcs8: new Uint8Array(1), certificateDer: new Uint8Array(1), password: "short", friendlyName: "x" }), /at least 8/);
});

test("certificateMatchesKey tells our certificate from another", { skip: noOpenssl }, async (t) => {
  const { keys, certDer } = await issued(t, "ec-p256");
  assert.equal(await certificateMatchesKey(certDer, keys.publicKey), true);
  const other = await generateKeyPair("ec-p256");
  assert.equal(await certificateMatchesKey(certDer, other.publicKey), false);
});

test("3DES-CBC agrees with OpenSSL (node:crypto)", () => {
  const key = nodeRandomBytes(24);
  const iv = nodeRandomBytes(8);
  for (const len of [0, 1, 7, 8, 9, 100, 1500]) {
    const data = nodeRandomBytes(len);
    let expected;
    try {
      const c = createCipheriv("des-ede3-cbc", key, iv);
      expected = Buffer.concat([c.update(data), c.final()]);
    } catch {
      return; // this Node's OpenSSL has no 3DES; the PKCS#12 tests above still cover it
    }
    const ours = tripleDesCbcEncrypt(key, iv, data);
    assert.equal(toHex(ours), expected.toString("hex"));
    assert.equal(toHex(tripleDesCbcDecrypt(key, iv, ours)), data.toString("hex"));
  }
});

test("PKCS#12 KDF: RFC 7292 / OpenSSL test vector", () => {
  // From OpenSSL's test/pkcs12_format_test and BouncyCastle's PKCS12Test: password "smeg", salt 0A58CF64530D823F, 1 iteration.
  const salt = new Uint8Array([0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f]);
  assert.equal(toHex(pkcs12Kdf("SHA-1", 1, "smeg", salt, 1, 24)), "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3");
  assert.equal(toHex(pkcs12Kdf("SHA-1", 2, "smeg", salt, 1, 8)), "79993dfe048d3b76");
});
