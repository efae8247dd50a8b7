// Key pair and PKCS#10 CSR generation with WebCrypto and PKI.js. The private key stays in memory
// here; only the CSR (public key + subject + signature) is ever sent anywhere.
import * as asn1js from "asn1js";
import { AttributeTypeAndValue, CertificationRequest, Certificate, RelativeDistinguishedNames } from "pkijs";
import { pemEncode, toBytes } from "./encoding.js";
import { subjectEntries } from "./subject.js";

const RSA_EXPONENT = new Uint8Array([0x01, 0x00, 0x01]);

/** Key types this page can make, by the policy's ids. */
export const KEY_TYPES = Object.freeze({
  "ec-p256": { label: "ECDSA P-256", algorithm: { name: "ECDSA", namedCurve: "P-256" }, hash: "SHA-256" },
  "ec-p384": { label: "ECDSA P-384", algorithm: { name: "ECDSA", namedCurve: "P-384" }, hash: "SHA-384" },
  "rsa-2048": { label: "RSA 2048", algorithm: rsa(2048), hash: "SHA-256" },
  "rsa-3072": { label: "RSA 3072", algorithm: rsa(3072), hash: "SHA-256" },
  "rsa-4096": { label: "RSA 4096", algorithm: rsa(4096), hash: "SHA-256" },
});

function rsa(modulusLength) {
  return { name: "RSASSA-PKCS1-v1_5", modulusLength, publicExponent: RSA_EXPONENT, hash: "SHA-256" };
}

export function isSupportedKeyType(id) {
  return Object.prototype.hasOwnProperty.call(KEY_TYPES, id);
}

function keyType(id) {
  if (!isSupportedKeyType(id)) throw new Error(`Unsupported key type: ${id}`);
  return KEY_TYPES[id];
}

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) throw new Error("This browser has no WebCrypto (crypto.subtle); it is only available on HTTPS pages.");
  return s;
}

/** An extractable key pair (extractable so that the user can download the private key). */
export async function generateKeyPair(keyTypeId) {
  return subtle().generateKey(keyType(keyTypeId).algorithm, true, ["sign", "verify"]);
}

/** PKCS#8 DER of a private key. */
export async function exportPrivateKeyPkcs8(privateKey) {
  return new Uint8Array(await subtle().exportKey("pkcs8", privateKey));
}

export function privateKeyPem(pkcs8Der) {
  return pemEncode(pkcs8Der, "PRIVATE KEY");
}

/**
 * The X.501 Name for the policy's subject: one single-valued RDN per attribute, UTF8String values.
 * (PKI.js would put all attributes into one multi-valued RDN, "O=..+OU=..+CN=..", so the Name is
 * encoded here and handed to PKI.js as pre-encoded bytes.)
 */
export function subjectName(policySubject) {
  const rdns = subjectEntries(policySubject).map(
    (entry) =>
      new asn1js.Set({
        value: [new AttributeTypeAndValue({ type: entry.oid, value: new asn1js.Utf8String({ value: entry.value }) }).toSchema()],
      }),
  );
  const der = new asn1js.Sequence({ value: rdns }).toBER(false);
  return new RelativeDistinguishedNames({ valueBeforeDecode: der });
}

/**
 * A signed PKCS#10 request with exactly the subject of the policy, UTF8String values and no attributes.
 * @returns {Promise<{pem: string, der: Uint8Array}>}
 */
export async function createCsr(keyPair, keyTypeId, policySubject) {
  const type = keyType(keyTypeId);
  const csr = new CertificationRequest();
  csr.version = 0;
  csr.subject = subjectName(policySubject);
  await csr.subjectPublicKeyInfo.importKey(keyPair.publicKey);
  csr.attributes = [];
  await csr.sign(keyPair.privateKey, type.hash);
  const der = new Uint8Array(csr.toSchema(false).toBER(false));
  return { der, pem: pemEncode(der, "CERTIFICATE REQUEST") };
}

/** Parse a DER certificate with PKI.js. */
export function parseCertificate(der) {
  return Certificate.fromBER(toBytes(der));
}

/** Parse a DER CSR with PKI.js; returns its subject as [{oid, value}]. */
export function csrSubject(der) {
  const csr = CertificationRequest.fromBER(toBytes(der));
  return csr.subject.typesAndValues.map((tv) => ({ oid: tv.type, value: String(tv.value.valueBlock.value) }));
}

/** True when the certificate carries the public key of this key pair. */
export async function certificateMatchesKey(certDer, publicKey) {
  const cert = parseCertificate(certDer);
  const certSpki = new Uint8Array(cert.subjectPublicKeyInfo.toSchema().toBER(false));
  const ourSpki = new Uint8Array(await subtle().exportKey("spki", publicKey));
  return certSpki.length === ourSpki.length && certSpki.every((b, i) => b === ourSpki[i]);
}
