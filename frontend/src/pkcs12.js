// PKCS#12 (PFX) files built with PKI.js structures, in two flavours:
//  - modern (default): PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC for the shrouded key bag and the
//    certificate bag, SHA-256 MAC (what OpenSSL 3 makes by default, with more PBKDF2 iterations);
//  - legacy ("compatibility mode for older macOS and Windows"): pbeWithSHAAnd3-KeyTripleDES-CBC for both
//    bags and a SHA-1 MAC (what `openssl pkcs12 -export -legacy` makes, with 3DES for the certificates).
// Both bags carry friendlyName (the certificate name) and localKeyId (SHA-1 of the certificate).
import * as asn1js from "asn1js";
import {
  AlgorithmIdentifier,
  Attribute,
  AuthenticatedSafe,
  CertBag,
  ContentInfo,
  DigestInfo,
  EncryptedContentInfo,
  EncryptedData,
  MacData,
  PFX,
  PKCS8ShroudedKeyBag,
  SafeBag,
  SafeContents,
  Certificate,
} from "pkijs";
import { sha1 } from "@noble/hashes/legacy.js";
import { toArrayBuffer, toBytes } from "./encoding.js";
import { encryptPbes2, encryptPkcs12TripleDes, hashOid, pkcs12Kdf, randomBytes } from "./pbe.js";

export const PBKDF2_ITERATIONS = 600000;
export const LEGACY_PBE_ITERATIONS = 2048;
export const MAC_ITERATIONS = 2048;
export const MIN_PASSWORD_LENGTH = 8;

const OID = {
  data: "1.2.840.113549.1.7.1",
  encryptedData: "1.2.840.113549.1.7.6",
  keyBag: "1.2.840.113549.1.12.10.1.2", // pkcs8ShroudedKeyBag
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  localKeyId: "1.2.840.113549.1.9.21",
};

function bagAttributes(friendlyName, localKeyId) {
  return [
    new Attribute({ type: OID.friendlyName, values: [new asn1js.BmpString({ value: friendlyName })] }),
    new Attribute({ type: OID.localKeyId, values: [new asn1js.OctetString({ valueHex: toArrayBuffer(localKeyId) })] }),
  ];
}

async function encrypt(plaintext, password, legacy) {
  return legacy
    ? encryptPkcs12TripleDes(plaintext, password, LEGACY_PBE_ITERATIONS)
    : encryptPbes2(plaintext, password, PBKDF2_ITERATIONS);
}

async function hmac(hashName, key, data) {
  const subtle = globalThis.crypto.subtle;
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: hashName }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}

/**
 * @param {object} p
 * @param {Uint8Array} p.privateKeyPkcs8 DER of the unencrypted PKCS#8 private key
 * @param {Uint8Array} p.certificateDer DER of the certificate
 * @param {string} p.password
 * @param {string} p.friendlyName
 * @param {boolean} [p.legacy]
 * @returns {Promise<Uint8Array>} DER of the PFX
 */
export async function buildPkcs12({ privateKeyPkcs8, certificateDer, password, friendlyName, legacy = false }) {
  if (typeof password !== "string" || password.length < MIN_PASSWORD_LENGTH) {
    throw new Error(`The PKCS#12 password must be at least ${MIN_PASSWORD_LENGTH} characters.`);
  }
  const certDer = toBytes(certificateDer);
  Certificate.fromBER(certDer); // throws unless it is a certificate
  const localKeyId = sha1(certDer);

  // Key: a pkcs8ShroudedKeyBag inside an unencrypted SafeContents (the key bag is encrypted itself).
  const keyEnc = await encrypt(toBytes(privateKeyPkcs8), password, legacy);
  const keyBag = new SafeBag({
    bagId: OID.keyBag,
    bagValue: new PKCS8ShroudedKeyBag({
      encryptionAlgorithm: keyEnc.algorithm,
      encryptedData: new asn1js.OctetString({ valueHex: toArrayBuffer(keyEnc.ciphertext) }),
    }),
    bagAttributes: bagAttributes(friendlyName, localKeyId),
  });
  const keyContents = new SafeContents({ safeBags: [keyBag] });

  // Certificate: a certBag inside an encrypted SafeContents (EncryptedData).
  const certBag = new SafeBag({
    bagId: OID.certBag,
    bagValue: new CertBag({
      certId: OID.x509Certificate,
      certValue: new asn1js.OctetString({ valueHex: toArrayBuffer(certDer) }), // the exact bytes issued
    }),
    bagAttributes: bagAttributes(friendlyName, localKeyId),
  });
  const certContents = new SafeContents({ safeBags: [certBag] });
  const certEnc = await encrypt(new Uint8Array(certContents.toSchema().toBER(false)), password, legacy);
  const certEncrypted = new EncryptedData({
    version: 0,
    encryptedContentInfo: new EncryptedContentInfo({
      contentType: OID.data,
      contentEncryptionAlgorithm: certEnc.algorithm,
      encryptedContent: new asn1js.OctetString({ valueHex: toArrayBuffer(certEnc.ciphertext) }),
      disableSplit: true, // keep it DER: a primitive OCTET STRING, definite lengths
    }),
  });

  const authSafe = new AuthenticatedSafe({
    safeContents: [
      new ContentInfo({
        contentType: OID.data,
        content: new asn1js.OctetString({ valueHex: keyContents.toSchema().toBER(false) }),
      }),
      new ContentInfo({ contentType: OID.encryptedData, content: certEncrypted.toSchema() }),
    ],
  });
  const authSafeDer = new Uint8Array(authSafe.toSchema().toBER(false));

  // Password integrity: HMAC over the AuthenticatedSafe with a key from the PKCS#12 KDF (id 3).
  const macHash = legacy ? "SHA-1" : "SHA-256";
  const macSalt = randomBytes(legacy ? 8 : 16);
  const macKey = pkcs12Kdf(macHash, 3, password, macSalt, MAC_ITERATIONS, legacy ? 20 : 32);
  const mac = await hmac(macHash, macKey, authSafeDer);

  const pfx = new PFX({
    version: 3,
    authSafe: new ContentInfo({
      contentType: OID.data,
      content: new asn1js.OctetString({ valueHex: toArrayBuffer(authSafeDer) }),
    }),
    macData: new MacData({
      mac: new DigestInfo({
        digestAlgorithm: new AlgorithmIdentifier({ algorithmId: hashOid(macHash), algorithmParams: new asn1js.Null() }),
        digest: new asn1js.OctetString({ valueHex: toArrayBuffer(mac) }),
      }),
      macSalt: new asn1js.OctetString({ valueHex: toArrayBuffer(macSalt) }),
      iterations: MAC_ITERATIONS,
    }),
  });
  return new Uint8Array(pfx.toSchema().toBER(false));
}
