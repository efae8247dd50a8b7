// Password-based encryption for PKCS#12 bags.
//  - PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 + AES-256-CBC, through WebCrypto.
//  - pbeWithSHAAnd3-KeyTripleDES-CBC (RFC 7292 appendix B/C): the PKCS#12 KDF with SHA-1 + 3DES-CBC,
//    which WebCrypto lacks, so 3DES comes from des.js and SHA-1 from @noble/hashes.
// The PKCS#12 KDF also derives the MAC key of the PFX.
import * as asn1js from "asn1js";
import { AlgorithmIdentifier, PBES2Params, PBKDF2Params } from "pkijs";
import { sha1 } from "@noble/hashes/legacy.js";
import { sha256 } from "@noble/hashes/sha2.js";
import desjs from "des.js";
import { concatBytes, toArrayBuffer, toBytes } from "./encoding.js";

export const OID = Object.freeze({
  pbes2: "1.2.840.113549.1.5.13",
  pbkdf2: "1.2.840.113549.1.5.12",
  hmacWithSHA256: "1.2.840.113549.2.9",
  aes256cbc: "2.16.840.1.101.3.4.1.42",
  pbeWithSHAAnd3KeyTripleDESCBC: "1.2.840.113549.1.12.1.3",
  sha1: "1.3.14.3.2.26",
  sha256: "2.16.840.1.101.3.4.2.1",
});

const HASHES = {
  "SHA-1": { fn: sha1, u: 20, v: 64, oid: OID.sha1 },
  "SHA-256": { fn: sha256, u: 32, v: 64, oid: OID.sha256 },
};

export function hashOid(name) {
  return HASHES[name].oid;
}

export function randomBytes(n) {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

/** The password as a null-terminated big-endian BMPString, as the PKCS#12 KDF wants it (like OpenSSL). */
export function bmpPassword(password) {
  const out = new Uint8Array(password.length * 2 + 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < password.length; i++) view.setUint16(i * 2, password.charCodeAt(i), false);
  return out;
}

/**
 * RFC 7292 appendix B.2 key derivation.
 * @param {string} hashName "SHA-1" | "SHA-256"
 * @param {1|2|3} id 1 = key material, 2 = IV, 3 = MAC key
 */
export function pkcs12Kdf(hashName, id, password, salt, iterations, length) {
  const { fn, u, v } = HASHES[hashName];
  const D = new Uint8Array(v).fill(id);
  const fill = (src) => {
    if (src.length === 0) return new Uint8Array(0);
    const out = new Uint8Array(v * Math.ceil(src.length / v));
    for (let i = 0; i < out.length; i++) out[i] = src[i % src.length];
    return out;
  };
  const I = concatBytes(fill(toBytes(salt)), fill(bmpPassword(password)));
  const out = new Uint8Array(length);
  for (let produced = 0; produced < length; ) {
    let A = fn(concatBytes(D, I));
    for (let j = 1; j < iterations; j++) A = fn(A);
    out.set(A.subarray(0, Math.min(u, length - produced)), produced);
    produced += u;
    if (produced >= length) break;
    const B = new Uint8Array(v);
    for (let i = 0; i < v; i++) B[i] = A[i % u];
    for (let off = 0; off < I.length; off += v) {
      // I_j = (I_j + B + 1) mod 2^(8v)
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = I[off + k] + B[k] + carry;
        I[off + k] = sum & 0xff;
        carry = sum >>> 8;
      }
    }
  }
  return out;
}

/** PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC. Returns {algorithm: AlgorithmIdentifier, ciphertext}. */
export async function encryptPbes2(plaintext, password, iterations) {
  const subtle = globalThis.crypto.subtle;
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const baseKey = await subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveKey"]);
  const key = await subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    baseKey,
    { name: "AES-CBC", length: 256 },
    false,
    ["encrypt"],
  );
  const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, key, toBytes(plaintext)));
  const kdfParams = new PBKDF2Params({
    salt: new asn1js.OctetString({ valueHex: toArrayBuffer(salt) }),
    iterationCount: iterations,
    prf: new AlgorithmIdentifier({ algorithmId: OID.hmacWithSHA256, algorithmParams: new asn1js.Null() }),
  });
  const params = new PBES2Params({
    keyDerivationFunc: new AlgorithmIdentifier({ algorithmId: OID.pbkdf2, algorithmParams: kdfParams.toSchema() }),
    encryptionScheme: new AlgorithmIdentifier({
      algorithmId: OID.aes256cbc,
      algorithmParams: new asn1js.OctetString({ valueHex: toArrayBuffer(iv) }),
    }),
  });
  return {
    algorithm: new AlgorithmIdentifier({ algorithmId: OID.pbes2, algorithmParams: params.toSchema() }),
    ciphertext,
  };
}

/** 3DES-EDE-CBC with PKCS#7 padding. */
export function tripleDesCbcEncrypt(key, iv, plaintext) {
  const cbc = desjs.CBC.instantiate(desjs.EDE);
  const cipher = cbc.create({ type: "encrypt", key: Array.from(key), iv: Array.from(iv) });
  return Uint8Array.from(cipher.update(Array.from(toBytes(plaintext))).concat(cipher.final()));
}

export function tripleDesCbcDecrypt(key, iv, ciphertext) {
  const cbc = desjs.CBC.instantiate(desjs.EDE);
  const cipher = cbc.create({ type: "decrypt", key: Array.from(key), iv: Array.from(iv) });
  return Uint8Array.from(cipher.update(Array.from(toBytes(ciphertext))).concat(cipher.final()));
}

/** pbeWithSHAAnd3-KeyTripleDES-CBC. Returns {algorithm: AlgorithmIdentifier, ciphertext}. */
export function encryptPkcs12TripleDes(plaintext, password, iterations) {
  const salt = randomBytes(8);
  const key = pkcs12Kdf("SHA-1", 1, password, salt, iterations, 24);
  const iv = pkcs12Kdf("SHA-1", 2, password, salt, iterations, 8);
  const ciphertext = tripleDesCbcEncrypt(key, iv, plaintext);
  const params = new asn1js.Sequence({
    value: [new asn1js.OctetString({ valueHex: toArrayBuffer(salt) }), new asn1js.Integer({ value: iterations })],
  });
  return {
    algorithm: new AlgorithmIdentifier({ algorithmId: OID.pbeWithSHAAnd3KeyTripleDESCBC, algorithmParams: params }),
    ciphertext,
  };
}
