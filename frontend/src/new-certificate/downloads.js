// The generated key's downloads: private key, certificate, PKCS#12 (with a password chosen here)
// and a zip of everything. All files are made in the browser; the portal only hears which format
// was downloaded (for the audit log).
import { byId, copyText, nextFrame, saveFile, setBusy } from "../dom.js";
import { buildZip, fileNames, readmeText } from "../files.js";
import { privateKeyPem } from "../keys.js";
import { generatePassword, passwordProblem } from "../password.js";
import { MIN_PASSWORD_LENGTH, buildPkcs12 } from "../pkcs12.js";
import { recordDownload } from "./certificate-api.js";
import { errorText } from "./errors.js";

const NEEDS_CERTIFICATE = ["download-certificate", "download-pkcs12", "download-zip", "fingerprint-copy"];

/** The zip's files by name: key, certificate, PKCS#12 and a README for this certificate. */
export function zipFiles({ generated, pkcs12, hostname, legacyPkcs12 }) {
  const names = fileNames(generated.name);
  return {
    [names.key]: privateKeyPem(generated.pkcs8),
    [names.certificate]: generated.certificatePem,
    [names.pkcs12]: pkcs12,
    [names.readme]: readmeText({
      name: generated.name,
      hostname,
      fingerprint: generated.issued.fingerprint_sha256,
      expiresOn: generated.issued.expires_on,
      legacyPkcs12,
      issuer: generated.issued.issuer,
    }),
  };
}

/** Labels the download buttons with their file names; without a certificate only the key can be saved. */
export function offerDownloads(generated) {
  const names = fileNames(generated.name);
  byId("download-key").textContent = `Private key (${names.key})`;
  byId("download-certificate").textContent = `Certificate (${names.certificate})`;
  byId("download-pkcs12").textContent = `PKCS#12 (${names.pkcs12})`;
  byId("download-zip").textContent = `Everything as a zip (${names.zip})`;
  if (!generated.certificateDer) for (const id of NEEDS_CERTIFICATE) byId(id).disabled = true;
}

function passwordFields() {
  const password = byId("p12-password");
  const confirm = byId("p12-password-confirm");
  password.minLength = MIN_PASSWORD_LENGTH;
  confirm.minLength = MIN_PASSWORD_LENGTH;
  const show = (visible) => {
    password.type = visible ? "text" : "password";
    confirm.type = password.type;
  };
  const message = (text, isError) => {
    const el = byId("p12-message");
    el.textContent = text;
    el.dataset.kind = isError ? "error" : "info";
    if (isError) password.setAttribute("aria-invalid", "true");
    else password.removeAttribute("aria-invalid");
  };
  byId("p12-show").addEventListener("change", (ev) => show(ev.currentTarget.checked));
  byId("p12-generate").addEventListener("click", () => {
    const generatedPassword = generatePassword(20);
    password.value = generatedPassword;
    confirm.value = generatedPassword;
    byId("p12-show").checked = true;
    show(true);
    message("A password was generated and is shown above. Write it down (or store it in your password manager): you need it to import the .p12 file.", false);
  });
  return { password, confirm, message };
}

/** The PKCS#12 file, or null after saying (under the password fields) why it cannot be built. */
async function makePkcs12(generated, fields, button) {
  const problem = passwordProblem(fields.password.value, fields.confirm.value, MIN_PASSWORD_LENGTH);
  if (problem) {
    fields.message(problem, true);
    fields.password.focus();
    return null;
  }
  fields.message("", false);
  setBusy(button, true, "Building…");
  try {
    await nextFrame();
    return await buildPkcs12({
      privateKeyPkcs8: generated.pkcs8,
      certificateDer: generated.certificateDer,
      password: fields.password.value,
      friendlyName: generated.name,
      legacy: byId("p12-legacy").checked,
    });
  } catch (e) {
    console.error(e);
    fields.message(`Could not build the PKCS#12 file: ${errorText(e)}`, true);
    return null;
  } finally {
    setBusy(button, false);
  }
}

/** Wires the download buttons of the generated key; page.generated holds what to download. */
export function setupDownloads(page) {
  const fields = passwordFields();
  const record = (format) => recordDownload(page.downloadEvents, page.generated.issued.id, format);
  const keySaved = () => {
    page.generated.keySaved = true;
    byId("key-warning").dataset.saved = "true";
    byId("key-saved-note").hidden = false;
  };
  const canBundle = () => page.generated && page.generated.pkcs8 && page.generated.certificateDer;

  byId("download-key").addEventListener("click", () => {
    if (!page.generated) return;
    saveFile(privateKeyPem(page.generated.pkcs8), fileNames(page.generated.name).key, "application/x-pem-file");
    keySaved();
    record("key");
  });

  byId("download-certificate").addEventListener("click", () => {
    if (!page.generated || !page.generated.certificatePem) return;
    saveFile(page.generated.certificatePem, fileNames(page.generated.name).certificate, "application/x-pem-file");
    record("certificate");
  });

  byId("fingerprint-copy").addEventListener("click", (ev) => copyText(byId("fingerprint").textContent, ev.currentTarget));

  byId("download-pkcs12").addEventListener("click", async (ev) => {
    if (!canBundle()) return;
    const pkcs12 = await makePkcs12(page.generated, fields, ev.currentTarget);
    if (!pkcs12) return;
    saveFile(pkcs12, fileNames(page.generated.name).pkcs12, "application/x-pkcs12");
    keySaved();
    record("pkcs12");
  });

  byId("download-zip").addEventListener("click", async (ev) => {
    if (!canBundle()) return;
    const pkcs12 = await makePkcs12(page.generated, fields, ev.currentTarget);
    if (!pkcs12) return;
    const files = zipFiles({ generated: page.generated, pkcs12, hostname: page.hostnames[0], legacyPkcs12: byId("p12-legacy").checked });
    saveFile(buildZip(files), fileNames(page.generated.name).zip, "application/zip");
    keySaved();
    record("zip");
  });
}
