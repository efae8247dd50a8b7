// The "new certificate" page. The private key is generated here with WebCrypto and never leaves the
// browser: the only things sent are the CSR (to issue_url) and download audit events ({"format": ...}).
import { downloadEventUrl, failureMessage, requestJson } from "./api.js";
import { pemBlocks, pemDecode, pemEncode } from "./encoding.js";
import { buildZip, fileNames, readmeText } from "./files.js";
import {
  KEY_TYPES,
  certificateMatchesKey,
  createCsr,
  csrSubject,
  exportPrivateKeyPkcs8,
  generateKeyPair,
  isSupportedKeyType,
  privateKeyPem,
} from "./keys.js";
import { generatePassword, passwordProblem } from "./password.js";
import { MIN_PASSWORD_LENGTH, buildPkcs12 } from "./pkcs12.js";
import { subjectEntries, subjectProblems, subjectText } from "./subject.js";

const NAME_MAX_LENGTH = 100;
const CSR_FILE_MAX_BYTES = 64 * 1024;

const $ = (id) => document.getElementById(id);

class UserError extends Error {}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

function setBusy(button, busy, busyText) {
  if (!button) return;
  if (busy) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    if (busyText) button.textContent = busyText;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  } else {
    if (button.dataset.label) button.textContent = button.dataset.label;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
  el.scrollIntoView({ block: "nearest" });
}

function clearError() {
  const el = $("error");
  el.textContent = "";
  el.hidden = true;
}

function validityLabel(days) {
  if (days === 365) return "365 days (1 year)";
  if (days % 30 === 0 && days < 365) return `${days} days (${days / 30} month${days === 30 ? "" : "s"})`;
  return `${days} days`;
}

function fillValiditySelect(select, validity) {
  select.replaceChildren();
  const choices = validity && Array.isArray(validity.choices) && validity.choices.length ? validity.choices : [365];
  const def = validity && choices.includes(validity.default) ? validity.default : choices[choices.length - 1];
  for (const days of choices) {
    const option = new Option(validityLabel(days), String(days), days === def, days === def);
    select.add(option);
  }
}

function fillKeyTypeSelect(select, policy) {
  select.replaceChildren();
  const offered = Array.isArray(policy.key_types) && policy.key_types.length
    ? policy.key_types.filter((k) => k && isSupportedKeyType(k.id))
    : Object.keys(KEY_TYPES).map((id) => ({ id, label: KEY_TYPES[id].label }));
  const def = offered.some((k) => k.id === policy.default_key_type) ? policy.default_key_type : offered[0] && offered[0].id;
  for (const k of offered) {
    select.add(new Option(k.label || KEY_TYPES[k.id].label, k.id, k.id === def, k.id === def));
  }
  return offered.length > 0;
}

function saveFile(content, filename, type) {
  const blob = new Blob([content], { type });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.rel = "noopener";
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Fallback for browsers without the async clipboard (or without permission).
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
  }
  if (button) {
    const label = button.dataset.copyLabel || button.textContent;
    button.dataset.copyLabel = label;
    button.textContent = ok ? "Copied" : "Copy failed: select and copy it by hand";
    setTimeout(() => {
      button.textContent = label;
    }, 2000);
  }
  return ok;
}

function setupTabs() {
  const tabs = [$("tab-generate"), $("tab-paste")];
  const select = (tab, focus) => {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    clearError();
  };
  for (const [i, tab] of tabs.entries()) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (ev) => {
      let next = null;
      if (ev.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
      else if (ev.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (ev.key === "Home") next = tabs[0];
      else if (ev.key === "End") next = tabs[tabs.length - 1];
      if (next) {
        ev.preventDefault();
        select(next, true);
      }
    });
  }
}

function readName(input) {
  const name = input.value.trim();
  if (!name) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw new UserError("Give the certificate a name (for example the machine it is for).");
  }
  if (name.length > NAME_MAX_LENGTH) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    throw new UserError(`The name can be at most ${NAME_MAX_LENGTH} characters.`);
  }
  input.removeAttribute("aria-invalid");
  return name;
}

function csrfToken(root) {
  const input = root.querySelector('input[name="csrfmiddlewaretoken"]') || document.querySelector('input[name="csrfmiddlewaretoken"]');
  if (input && input.value) return input.value;
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

function issuedCertificateDer(data) {
  if (!data || typeof data.certificate !== "string") {
    throw new UserError("The portal's answer has no certificate in it. Please try again, or contact the portal's administrators.");
  }
  const der = pemDecode(data.certificate, "CERTIFICATE");
  if (!der) throw new UserError("The portal's answer has no PEM certificate in it.");
  return der;
}

function formatDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toUTCString().replace(" GMT", " UTC");
}

function init() {
  const root = $("new-certificate");
  if (!root) return;
  const config = {
    policyUrl: root.dataset.policyUrl,
    issueUrl: root.dataset.issueUrl,
    downloadEventUrlTemplate: root.dataset.downloadEventUrlTemplate,
    dashboardUrl: root.dataset.dashboardUrl,
  };
  let hostnames = [];
  try {
    hostnames = JSON.parse(($("api-hostnames") || {}).textContent || "[]") || [];
  } catch {
    hostnames = [];
  }
  const csrf = csrfToken(root);

  const state = {
    policy: null,
    busy: false,
    issued: null, // response of issue_url for the generated key
    keyPair: null,
    pkcs8: null,
    certificatePem: null,
    certificateDer: null,
    keySaved: false,
  };

  setupTabs();

  // Leaving the page before the key is saved loses it for good.
  window.addEventListener("beforeunload", (ev) => {
    if (state.pkcs8 && !state.keySaved) {
      ev.preventDefault();
      ev.returnValue = "";
      return "";
    }
    return undefined;
  });

  function recordDownload(id, format) {
    if (!config.downloadEventUrlTemplate || id === undefined || id === null) return;
    requestJson(downloadEventUrl(config.downloadEventUrlTemplate, id), {
      method: "POST",
      body: { format },
      csrfToken: csrf,
    }).catch(() => {});
  }

  // ---- policy -------------------------------------------------------------------------------
  const createButton = $("create-button");
  const pasteSubmit = $("paste-submit");
  createButton.disabled = true;
  pasteSubmit.disabled = true;

  async function loadPolicy() {
    const status = $("policy-status");
    const result = await requestJson(config.policyUrl);
    if (!result.ok || !result.data || !result.data.subject) {
      status.textContent = "";
      showError(`Could not load the certificate policy: ${failureMessage(result)} Reload the page to try again.`);
      return;
    }
    const policy = result.data;
    let entries;
    try {
      entries = subjectEntries(policy.subject);
    } catch (e) {
      showError(e.message);
      return;
    }
    state.policy = policy;
    $("policy-subject").textContent = subjectText(entries);
    const active = Number(policy.active_certificates);
    const max = Number(policy.max_active_certificates);
    if (Number.isFinite(active) && Number.isFinite(max)) {
      $("policy-active").textContent = `${active} of ${max}`;
      if (active >= max) {
        $("policy-limit").hidden = false;
        $("policy-limit").textContent =
          `You already have ${active} active certificates, the most allowed. Revoke one on the dashboard before creating another.`;
      }
    }
    $("policy-summary").hidden = false;
    status.textContent = "";

    const hasKeyTypes = fillKeyTypeSelect($("key-type"), policy);
    fillValiditySelect($("validity"), policy.validity_days);
    fillValiditySelect($("paste-validity"), policy.validity_days);
    $("openssl-command").textContent = policy.openssl_command || "";
    $("openssl-copy").disabled = !policy.openssl_command;
    createButton.disabled = !hasKeyTypes;
    pasteSubmit.disabled = false;
  }

  // ---- generate in the browser ---------------------------------------------------------------
  const steps = ["key", "csr", "issue"];
  function setStep(step, stepState) {
    const li = $(`progress-${step}`);
    li.dataset.state = stepState;
    const mark = li.querySelector(".nc-step-state");
    if (mark) mark.textContent = { pending: "", active: "(in progress)", done: "(done)", error: "(failed)" }[stepState];
  }

  function setGenerateFormDisabled(disabled) {
    for (const el of $("generate-form").querySelectorAll("input, select, button")) el.disabled = disabled;
  }

  $("generate-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.busy || !state.policy || state.pkcs8) return;
    clearError();
    let name;
    try {
      name = readName($("name"));
    } catch (e) {
      showError(e.message);
      return;
    }
    const keyTypeId = $("key-type").value;
    const validityDays = Number.parseInt($("validity").value, 10);

    state.busy = true;
    setGenerateFormDisabled(true);
    setBusy(createButton, true, "Working…");
    $("progress").hidden = false;
    for (const s of steps) setStep(s, "pending");
    let current = "key";
    try {
      setStep("key", "active");
      await nextFrame();
      const keyPair = await generateKeyPair(keyTypeId);
      setStep("key", "done");

      current = "csr";
      setStep("csr", "active");
      const csr = await createCsr(keyPair, keyTypeId, state.policy.subject);
      setStep("csr", "done");

      current = "issue";
      setStep("issue", "active");
      // Only the CSR, the validity and the name are sent. Never the key.
      const result = await requestJson(config.issueUrl, {
        method: "POST",
        body: { csr: csr.pem, validity_days: validityDays, name },
        csrfToken: csrf,
      });
      if (!result.ok) throw new UserError(`The certificate was not issued: ${failureMessage(result)}`);
      const data = result.data || {};
      // An accepted request without a certificate yet (e.g. issuance still unconfirmed): keep the key
      // so that the user can save it; the certificate can be fetched from its detail page later.
      const certDer = data.certificate ? issuedCertificateDer(data) : null;
      if (certDer && !(await certificateMatchesKey(certDer, keyPair.publicKey))) {
        throw new UserError(
          "The certificate the portal returned does not belong to the key made in this browser. Do not use it; please contact the portal's administrators.",
        );
      }
      state.keyPair = keyPair;
      state.pkcs8 = await exportPrivateKeyPkcs8(keyPair.privateKey);
      state.issued = data;
      state.certificateDer = certDer;
      state.certificatePem = certDer ? pemEncode(certDer, "CERTIFICATE") : null;
      setStep("issue", "done");
      showGenerated();
    } catch (e) {
      setStep(current, "error");
      if (!(e instanceof UserError)) console.error(e);
      showError(e instanceof UserError ? e.message : `Something went wrong while ${
        { key: "generating the key", csr: "building the certificate request", issue: "requesting the certificate" }[current]
      }: ${e && e.message ? e.message : e}`);
      setGenerateFormDisabled(false);
      setBusy(createButton, false);
    } finally {
      state.busy = false;
    }
  });

  function displayName() {
    return (state.issued && state.issued.name) || $("name").value.trim();
  }

  function showGenerated() {
    const issued = state.issued;
    setBusy(createButton, false);
    setGenerateFormDisabled(true); // one key per page: the result below belongs to it
    createButton.hidden = true;
    $("fingerprint").textContent = issued.fingerprint_sha256 || "";
    $("result-name").textContent = displayName();
    $("result-serial").textContent = issued.serial_number || "";
    $("result-expires").textContent = formatDate(issued.expires_on);
    const names = fileNames(displayName());
    $("download-key").textContent = `Private key (${names.key})`;
    $("download-certificate").textContent = `Certificate (${names.certificate})`;
    $("download-pkcs12").textContent = `PKCS#12 (${names.pkcs12})`;
    $("download-zip").textContent = `Everything as a zip (${names.zip})`;
    if (issued.detail_url) $("detail-link").href = issued.detail_url;
    else $("detail-link").hidden = true;
    if (!state.certificateDer) {
      const pending = $("result-pending");
      pending.textContent = `The portal accepted the request, but the certificate is not ready yet (status: ${
        issued.status || "unknown"
      }). Download the private key now: you will get the certificate from its detail page once it is issued.`;
      pending.hidden = false;
      $("result-heading").textContent = "Certificate requested";
      for (const id of ["download-certificate", "download-pkcs12", "download-zip", "fingerprint-copy"]) $(id).disabled = true;
    }
    $("result").hidden = false;
    $("key-warning").hidden = false;
    $("result-heading").focus();
  }

  function markKeySaved() {
    state.keySaved = true;
    $("key-warning").dataset.saved = "true";
    $("key-saved-note").hidden = false;
  }

  $("download-key").addEventListener("click", () => {
    if (!state.pkcs8) return;
    saveFile(privateKeyPem(state.pkcs8), fileNames(displayName()).key, "application/x-pem-file");
    markKeySaved();
    recordDownload(state.issued.id, "key");
  });

  $("download-certificate").addEventListener("click", () => {
    if (!state.certificatePem) return;
    saveFile(state.certificatePem, fileNames(displayName()).certificate, "application/x-pem-file");
    recordDownload(state.issued.id, "certificate");
  });

  $("fingerprint-copy").addEventListener("click", (ev) => copyText($("fingerprint").textContent, ev.currentTarget));

  // PKCS#12 password
  const p12Password = $("p12-password");
  const p12Confirm = $("p12-password-confirm");
  p12Password.minLength = MIN_PASSWORD_LENGTH;
  p12Confirm.minLength = MIN_PASSWORD_LENGTH;

  $("p12-show").addEventListener("change", (ev) => {
    const type = ev.currentTarget.checked ? "text" : "password";
    p12Password.type = type;
    p12Confirm.type = type;
  });

  $("p12-generate").addEventListener("click", () => {
    const pw = generatePassword(20);
    p12Password.value = pw;
    p12Confirm.value = pw;
    $("p12-show").checked = true;
    p12Password.type = "text";
    p12Confirm.type = "text";
    setP12Message("A password was generated and is shown above. Write it down (or store it in your password manager): you need it to import the .p12 file.", false);
  });

  function setP12Message(text, isError) {
    const el = $("p12-message");
    el.textContent = text;
    el.dataset.kind = isError ? "error" : "info";
    if (isError) p12Password.setAttribute("aria-invalid", "true");
    else p12Password.removeAttribute("aria-invalid");
  }

  async function makePkcs12(button) {
    const problem = passwordProblem(p12Password.value, p12Confirm.value, MIN_PASSWORD_LENGTH);
    if (problem) {
      setP12Message(problem, true);
      p12Password.focus();
      return null;
    }
    setP12Message("", false);
    setBusy(button, true, "Building…");
    try {
      await nextFrame();
      return await buildPkcs12({
        privateKeyPkcs8: state.pkcs8,
        certificateDer: state.certificateDer,
        password: p12Password.value,
        friendlyName: displayName(),
        legacy: $("p12-legacy").checked,
      });
    } catch (e) {
      console.error(e);
      setP12Message(`Could not build the PKCS#12 file: ${e && e.message ? e.message : e}`, true);
      return null;
    } finally {
      setBusy(button, false);
    }
  }

  $("download-pkcs12").addEventListener("click", async (ev) => {
    if (!state.pkcs8 || !state.certificateDer) return;
    const button = ev.currentTarget;
    const p12 = await makePkcs12(button);
    if (!p12) return;
    saveFile(p12, fileNames(displayName()).pkcs12, "application/x-pkcs12");
    markKeySaved();
    recordDownload(state.issued.id, "pkcs12");
  });

  $("download-zip").addEventListener("click", async (ev) => {
    if (!state.pkcs8 || !state.certificateDer) return;
    const button = ev.currentTarget;
    const p12 = await makePkcs12(button);
    if (!p12) return;
    const name = displayName();
    const names = fileNames(name);
    const zip = buildZip({
      [names.key]: privateKeyPem(state.pkcs8),
      [names.certificate]: state.certificatePem,
      [names.pkcs12]: p12,
      [names.readme]: readmeText({
        name,
        hostname: hostnames[0],
        fingerprint: state.issued.fingerprint_sha256,
        expiresOn: state.issued.expires_on,
        legacyPkcs12: $("p12-legacy").checked,
      }),
    });
    saveFile(zip, names.zip, "application/zip");
    markKeySaved();
    recordDownload(state.issued.id, "zip");
  });

  // ---- paste a CSR ---------------------------------------------------------------------------
  const csrText = $("csr-pem");
  const pasteState = { issued: null, certificatePem: null };

  $("openssl-copy").addEventListener("click", (ev) => copyText($("openssl-command").textContent, ev.currentTarget));

  $("csr-file").addEventListener("change", async (ev) => {
    const file = ev.currentTarget.files && ev.currentTarget.files[0];
    if (!file) return;
    clearError();
    if (file.size > CSR_FILE_MAX_BYTES) {
      showError("That file is too large to be a certificate request. Choose the .csr file made by openssl.");
      return;
    }
    csrText.value = await file.text();
    csrText.focus();
  });

  function pastedCsr() {
    const text = csrText.value;
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
    const problems = subjectProblems(actual, state.policy.subject);
    if (problems.length) {
      throw new UserError(
        `The certificate request's subject does not match the policy: ${problems.join("; ")}. Make it with the openssl command below, which sets the right subject.`,
      );
    }
    return pemEncode(block.der, "CERTIFICATE REQUEST");
  }

  $("paste-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.busy || !state.policy) return;
    clearError();
    let csrPem;
    let name;
    try {
      csrPem = pastedCsr();
      csrText.removeAttribute("aria-invalid");
    } catch (e) {
      csrText.setAttribute("aria-invalid", "true");
      showError(e.message);
      return;
    }
    try {
      name = readName($("paste-name"));
    } catch (e) {
      showError(e.message);
      return;
    }
    const validityDays = Number.parseInt($("paste-validity").value, 10);
    state.busy = true;
    setBusy(pasteSubmit, true, "Submitting…");
    $("paste-progress").textContent = "Requesting certificate from Cloudflare…";
    try {
      const result = await requestJson(config.issueUrl, {
        method: "POST",
        body: { csr: csrPem, validity_days: validityDays, name },
        csrfToken: csrf,
      });
      if (!result.ok) throw new UserError(`The certificate was not issued: ${failureMessage(result)}`);
      const data = result.data || {};
      const der = data.certificate ? issuedCertificateDer(data) : null;
      pasteState.issued = data;
      pasteState.certificatePem = der ? pemEncode(der, "CERTIFICATE") : null;
      $("paste-progress").textContent = der
        ? "Certificate issued."
        : `The request was accepted, but the certificate is not ready yet (status: ${data.status || "unknown"}). Get it from its detail page once it is issued.`;
      $("paste-download-certificate").disabled = !der;
      $("paste-fingerprint").textContent = data.fingerprint_sha256 || "";
      $("paste-download-certificate").textContent = `Certificate (${fileNames(data.name || name).certificate})`;
      if (data.detail_url) $("paste-detail-link").href = data.detail_url;
      else $("paste-detail-link").hidden = true;
      $("paste-result").hidden = false;
      $("paste-form").hidden = true;
      $("paste-result-heading").focus();
    } catch (e) {
      $("paste-progress").textContent = "";
      if (!(e instanceof UserError)) console.error(e);
      showError(e instanceof UserError ? e.message : `Something went wrong: ${e && e.message ? e.message : e}`);
      setBusy(pasteSubmit, false);
    } finally {
      state.busy = false;
    }
  });

  $("paste-download-certificate").addEventListener("click", () => {
    if (!pasteState.certificatePem) return;
    saveFile(pasteState.certificatePem, fileNames(pasteState.issued.name || $("paste-name").value).certificate, "application/x-pem-file");
    recordDownload(pasteState.issued.id, "certificate");
  });

  $("paste-fingerprint-copy").addEventListener("click", (ev) => copyText($("paste-fingerprint").textContent, ev.currentTarget));

  for (const link of document.querySelectorAll("[data-dashboard-link]")) {
    if (config.dashboardUrl) link.href = config.dashboardUrl;
  }

  loadPolicy().catch((e) => {
    console.error(e);
    showError(`Could not load the certificate policy: ${e && e.message ? e.message : e}`);
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
