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
 * @param {{kind: string, name: string, ca_certificate_url: string|null, crl_url: string|null}} [p.issuer]
 *   who signed the certificate, as the API says (a portal CA adds a section for the API's operators)
 */
export function readmeText({ name, hostname, fingerprint, expiresOn, legacyPkcs12 = false, issuer }) {
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
    ...originSection(issuer),
  ];
  return lines.join("\n");
}

/**
 * For a certificate of the portal's own CA: where an origin gets the CA and its CRL. Cloudflare's managed CA
 * cannot be downloaded, so its certificates get no such section.
 */
function originSection(issuer) {
  if (!issuer || issuer.kind !== "portal_ca" || !issuer.ca_certificate_url || !issuer.crl_url) return [];
  return [
    "For the API's operators: checking this certificate at an origin",
    `  It was signed by the portal's own CA, "${issuer.name}". A server that checks client certificates itself`,
    "  needs that CA and its certificate revocation list (CRL):",
    `  CA certificate (PEM)   ${issuer.ca_certificate_url}`,
    `  CRL (DER)              ${issuer.crl_url}`,
    `  CRL (PEM)              ${issuer.crl_url}.pem`,
    "  The CRL changes whenever a certificate is revoked: fetch it again every few minutes and reload the",
    '  server. The portal\'s README, "Origins: verifying portal-CA certificates and the CRL", shows how',
    "  with nginx and with Python's ssl module.",
    "",
  ];
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
