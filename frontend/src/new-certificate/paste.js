// "Paste a CSR": a certificate request made elsewhere (with the openssl command shown) is checked
// against the policy here, then sent for a certificate. A pasted private key is refused before
// anything is sent.
import { byId, copyText, saveFile, setBusy } from "../dom.js";
import { pemBlocks, pemEncode } from "../encoding.js";
import { fileNames } from "../files.js";
import { csrSubject } from "../keys.js";
import { subjectProblems } from "../subject.js";
import { recordDownload, requestCertificate } from "./certificate-api.js";
import { UserError, userMessage } from "./errors.js";
import { showFacts } from "./generate.js";
import { readName } from "./name.js";

export const CSR_FILE_MAX_BYTES = 64 * 1024;

/** The CSR in the text as PEM, if its subject is the policy's; a UserError says what is wrong. */
export function pastedCsrPem(text, policySubject) {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new UserError(
      "This is a private key. Never paste or upload a private key anywhere: keep it on your machine and paste only the certificate request (the .csr file). Nothing was sent.",
    );
  }
  const block = pemBlocks(text).find((b) => b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST");
  if (!block) {
    throw new UserError("Paste a certificate request in PEM form: it starts with -----BEGIN CERTIFICATE REQUEST-----.");
  }
  let actual;
  try {
    actual = csrSubject(block.der);
  } catch {
    throw new UserError("The certificate request could not be read. Make it again with the openssl command below.");
  }
  const problems = subjectProblems(actual, policySubject);
  if (problems.length) {
    throw new UserError(
      `The certificate request's subject does not match the policy: ${problems.join("; ")}. Make it with the openssl command below, which sets the right subject.`,
    );
  }
  return pemEncode(block.der, "CERTIFICATE REQUEST");
}

/** The CSR from the text area, or null after showing why it cannot be sent. */
function readCsr(page, textArea) {
  try {
    const pem = pastedCsrPem(textArea.value, page.policy.subject);
    textArea.removeAttribute("aria-invalid");
    return pem;
  } catch (e) {
    textArea.setAttribute("aria-invalid", "true");
    page.errors.show(e.message);
    return null;
  }
}

function showResult(answer, name) {
  const { issued, certificatePem } = answer;
  // The result panel's heading says "Certificate issued"; the progress line has nothing more to say.
  byId("paste-progress").textContent = "";
  if (!certificatePem) {
    byId("paste-result-heading").textContent = "Certificate requested";
    const pending = byId("paste-result-pending");
    pending.textContent = `The request was accepted, but the certificate is not ready yet (status: ${issued.status || "unknown"}). Get it from its detail page once it is issued.`;
    pending.hidden = false;
  }
  showFacts("paste-", { name: issued.name || name, issued, certificatePem });
  byId("paste-download-certificate").disabled = !certificatePem;
  byId("paste-fingerprint").textContent = issued.fingerprint_sha256 || "";
  byId("paste-download-certificate").textContent = `Certificate (${fileNames(issued.name || name).certificate})`;
  if (issued.detail_url) byId("paste-detail-link").href = issued.detail_url;
  else byId("paste-detail-link").hidden = true;
  byId("paste-result").hidden = false;
  byId("paste-form").hidden = true;
  byId("paste-result-heading").focus();
}

function setupFilePicker(page, textArea) {
  byId("csr-file").addEventListener("change", async (ev) => {
    const file = ev.currentTarget.files && ev.currentTarget.files[0];
    if (!file) return;
    page.errors.clear();
    if (file.size > CSR_FILE_MAX_BYTES) {
      page.errors.show("That file is too large to be a certificate request. Choose the .csr file made by openssl.");
      return;
    }
    textArea.value = await file.text();
    textArea.focus();
  });
}

/** Wires the paste form; onIssued(issued) runs once the portal has accepted the CSR. */
export function setupPaste(page, onIssued = () => {}) {
  const textArea = byId("csr-pem");
  const submit = byId("paste-submit");
  let answer = null; // the portal's answer once the CSR was accepted

  setupFilePicker(page, textArea);

  byId("paste-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (page.busy || !page.policy) return;
    page.errors.clear();
    const csrPem = readCsr(page, textArea);
    if (!csrPem) return;
    let name;
    try {
      name = readName(byId("paste-name"));
    } catch (e) {
      page.errors.show(e.message);
      return;
    }
    page.busy = true;
    setBusy(submit, true, "Submitting…");
    byId("paste-progress").textContent = "Requesting certificate from Cloudflare…";
    try {
      const validityDays = Number.parseInt(byId("paste-validity").value, 10);
      answer = await requestCertificate({ ...page.issuing, csrPem, validityDays, name });
      showResult(answer, name);
      onIssued(answer.issued);
    } catch (e) {
      byId("paste-progress").textContent = "";
      page.errors.show(userMessage(e, "Something went wrong"));
      setBusy(submit, false);
    } finally {
      page.busy = false;
    }
  });

  byId("paste-download-certificate").addEventListener("click", () => {
    if (!answer || !answer.certificatePem) return;
    const name = answer.issued.name || byId("paste-name").value;
    saveFile(answer.certificatePem, fileNames(name).certificate, "application/x-pem-file");
    recordDownload(page.downloadEvents, answer.issued.id, "certificate");
  });

  byId("paste-fingerprint-copy").addEventListener("click", (ev) => copyText(byId("paste-fingerprint").textContent, ev.currentTarget));
}
