// File names, the README of the zip, and the zip itself.
import { strToU8, zipSync } from "fflate";

/** A safe file base name from the certificate name: letters, digits, dot, dash, underscore. */
export function fileBaseName(name) {
  const base = String(name || "")
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/-{2,}/g, "-")
    .replace(/^[-.]+|[-.]+$/g, "")
    .slice(0, 64)
    .replace(/[-.]+$/g, "");
  return base || "client-certificate";
}

export function fileNames(name) {
  const base = fileBaseName(name);
  return { base, key: `${base}.key`, certificate: `${base}.crt`, pkcs12: `${base}.p12`, zip: `${base}.zip`, readme: "README.txt" };
}

/**
 * @param {object} p
 * @param {string} p.name certificate name
 * @param {string} [p.hostname] API hostname
 * @param {string} [p.fingerprint] SHA-256 fingerprint (lowercase hex)
 * @param {string} [p.expiresOn] ISO date
 * @param {boolean} [p.legacyPkcs12]
 */
export function readmeText({ name, hostname, fingerprint, expiresOn, legacyPkcs12 = false }) {
  const f = fileNames(name);
  const host = hostname || "<api-hostname>";
  const lines = [
    `mTLS client certificate "${name}"`,
    "",
    ...(fingerprint ? [`SHA-256 fingerprint: ${fingerprint}`] : []),
    ...(expiresOn ? [`Expires: ${expiresOn}`] : []),
    ...(fingerprint || expiresOn ? [""] : []),
    "Files",
    `  ${f.key.padEnd(24)} private key (PEM, PKCS#8, not encrypted): keep it secret`,
    `  ${f.certificate.padEnd(24)} client certificate (PEM)`,
    `  ${f.pkcs12.padEnd(24)} key and certificate as PKCS#12, protected by the password you chose${legacyPkcs12 ? " (compatibility mode: 3DES/SHA-1)" : ""}`,
    "",
    "IMPORTANT: the private key was generated in your browser and exists only in these files.",
    "The portal never received it and cannot recover it. If you lose it, create a new certificate",
    "in the portal (and revoke this one). Never send the key to anyone, including us.",
    "",
    "Use with curl",
    `  curl --cert ${f.certificate} --key ${f.key} https://${host}/`,
    "",
    "Use with Python requests",
    "  import requests",
    `  response = requests.get("https://${host}/", cert=("${f.certificate}", "${f.key}"))`,
    "",
    "Use with the PKCS#12 file (e.g. curl built with OpenSSL)",
    `  curl --cert-type P12 --cert ${f.pkcs12}:PASSWORD https://${host}/`,
    "",
  ];
  return lines.join("\n");
}

/**
 * @param {Record<string, Uint8Array|string>} files name -> content
 * @returns {Uint8Array}
 */
export function buildZip(files, mtime = new Date()) {
  const entries = {};
  for (const [name, content] of Object.entries(files)) {
    entries[name] = [typeof content === "string" ? strToU8(content) : content, { mtime }];
  }
  return zipSync(entries, { level: 6 });
}
