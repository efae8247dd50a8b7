// The page's two calls to the portal: ask for a certificate (the CSR only, never a key) and record
// a download in the audit log.
import { downloadEventUrl, failureMessage, requestJson } from "../api.js";
import { pemDecode, pemEncode } from "../encoding.js";
import { UserError } from "./errors.js";

function issuedCertificateDer(data) {
  if (typeof data.certificate !== "string") {
    throw new UserError("The portal's answer has no certificate in it. Please try again, or contact the portal's administrators.");
  }
  const der = pemDecode(data.certificate, "CERTIFICATE");
  if (!der) throw new UserError("The portal's answer has no PEM certificate in it.");
  return der;
}

/**
 * Sends a CSR to issue_url. An accepted request may come back without a certificate yet (issuance
 * still unconfirmed): then certificateDer and certificatePem are null.
 * @returns {Promise<{issued: object, certificateDer: Uint8Array|null, certificatePem: string|null}>}
 */
export async function requestCertificate({ issueUrl, csrfToken, csrPem, validityDays, name }) {
  const result = await requestJson(issueUrl, {
    method: "POST",
    body: { csr: csrPem, validity_days: validityDays, name },
    csrfToken,
  });
  if (!result.ok) throw new UserError(`The certificate was not issued: ${failureMessage(result)}`);
  const issued = result.data || {};
  const certificateDer = issued.certificate ? issuedCertificateDer(issued) : null;
  return { issued, certificateDer, certificatePem: certificateDer ? pemEncode(certificateDer, "CERTIFICATE") : null };
}

/** Fire and forget: a lost audit event must not stop the download. */
export function recordDownload({ urlTemplate, csrfToken }, id, format) {
  if (!urlTemplate || id === undefined || id === null) return;
  requestJson(downloadEventUrl(urlTemplate, id), { method: "POST", body: { format }, csrfToken }).catch(() => {});
}
