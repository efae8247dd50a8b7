// "Generate in the browser": key pair and CSR made here with WebCrypto, the CSR sent for a certificate.
// The private key never leaves the browser.
import { byId, nextFrame, setBusy } from "../dom.js";
import { certificateMatchesKey, createCsr, exportPrivateKeyPkcs8, generateKeyPair } from "../keys.js";
import { requestCertificate } from "./certificate-api.js";
import { UserError, errorText } from "./errors.js";
import { readName } from "./name.js";
import { StepError, progressList, runStep } from "./progress.js";

/**
 * Key, CSR, certificate request, step by step. `paint` lets the "generating" state show before the
 * browser is busy making an RSA key.
 * @returns {Promise<{issued: object, name: string, keyPair: CryptoKeyPair, pkcs8: Uint8Array,
 *   certificateDer: Uint8Array|null, certificatePem: string|null, keySaved: boolean}>}
 */
export async function makeCertificate({ keyTypeId, subject, request, progress, paint = nextFrame }) {
  const keyPair = await runStep(progress, "key", async () => {
    await paint();
    return generateKeyPair(keyTypeId);
  });
  const csr = await runStep(progress, "csr", () => createCsr(keyPair, keyTypeId, subject));
  return runStep(progress, "issue", async () => {
    // Only the CSR, the validity and the name are sent. Never the key.
    const answer = await requestCertificate({ ...request, csrPem: csr.pem });
    if (answer.certificateDer && !(await certificateMatchesKey(answer.certificateDer, keyPair.publicKey))) {
      throw new UserError(
        "The certificate the portal returned does not belong to the key made in this browser. Do not use it; please contact the portal's administrators.",
      );
    }
    const pkcs8 = await exportPrivateKeyPkcs8(keyPair.privateKey);
    return { ...answer, name: answer.issued.name || request.name, keyPair, pkcs8, keySaved: false };
  });
}

const pad = (n) => String(n).padStart(2, "0");

/** "2030-01-02 03:04 UTC": the one date format of the portal's pages (certificates/templatetags/certificate_pages.py). */
export function formatDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

/** Fills a result panel's facts: name, fingerprint, serial, expiry, and the certificate for its copy button. */
export function showFacts(prefix, { name, issued, certificatePem }) {
  byId(`${prefix}result-name`).textContent = name;
  byId(`${prefix}result-serial`).textContent = issued.serial_number || "";
  byId(`${prefix}result-expires`).textContent = formatDate(issued.expires_on);
  const copy = byId(`${prefix}certificate-copy`);
  if (certificatePem) copy.dataset.copy = certificatePem;
  copy.disabled = !certificatePem;
}

function setFormDisabled(disabled) {
  for (const el of byId("generate-form").querySelectorAll("input, select, button")) el.disabled = disabled;
}

function showResult(generated) {
  const { issued } = generated;
  byId("fingerprint").textContent = issued.fingerprint_sha256 || "";
  showFacts("", generated);
  if (issued.detail_url) byId("detail-link").href = issued.detail_url;
  else byId("detail-link").hidden = true;
  if (!generated.certificateDer) {
    // Accepted, but no certificate yet: the key is kept so that the user can save it now.
    const pending = byId("result-pending");
    pending.textContent = `The portal accepted the request, but the certificate is not ready yet (status: ${
      issued.status || "unknown"
    }). Download the private key now: you will get the certificate from its detail page once it is issued.`;
    pending.hidden = false;
    byId("result-heading").textContent = "Certificate requested";
  }
  byId("result").hidden = false;
  byId("key-warning").hidden = false;
  byId("result-heading").focus();
}

/** Wires the generate form; onGenerated(generated) runs once the certificate (or its acceptance) is in. */
export function setupGenerate(page, onGenerated) {
  const createButton = byId("create-button");
  const progress = progressList(byId("progress"));

  byId("generate-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (page.busy || !page.policy || page.generated) return;
    page.errors.clear();
    let name;
    try {
      name = readName(byId("name"));
    } catch (e) {
      page.errors.show(e.message);
      return;
    }
    page.busy = true;
    setFormDisabled(true);
    setBusy(createButton, true, "Working…");
    progress.reset();
    try {
      const generated = await makeCertificate({
        keyTypeId: byId("key-type").value,
        subject: page.policy.subject,
        request: { ...page.issuing, validityDays: Number.parseInt(byId("validity").value, 10), name },
        progress,
      });
      setBusy(createButton, false);
      setFormDisabled(true); // one key per page: the result below belongs to it
      createButton.hidden = true;
      onGenerated(generated);
      showResult(generated);
    } catch (e) {
      const cause = e instanceof StepError ? e.cause : e;
      if (!(cause instanceof UserError)) console.error(cause);
      page.errors.show(e instanceof StepError ? e.userMessage : `Something went wrong: ${errorText(e)}`);
      setFormDisabled(false);
      setBusy(createButton, false);
    } finally {
      page.busy = false;
    }
  });
}
