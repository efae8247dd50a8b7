// The "new certificate" page. The private key is generated here with WebCrypto and never leaves the
// browser: the only things sent are the CSR (to issue_url) and download audit events ({"format": ...}).
// This entry reads the page's URLs from the data attributes of #new-certificate and wires the modules
// in new-certificate/: policy, tabs, generate (with its progress steps and downloads) and paste.
import { byId } from "./dom.js";
import { offerDownloads, setupDownloads } from "./new-certificate/downloads.js";
import { errorBanner, userMessage } from "./new-certificate/errors.js";
import { setupGenerate } from "./new-certificate/generate.js";
import { setupPaste } from "./new-certificate/paste.js";
import { fetchPolicy, mayIssue, showPolicy, showStanding } from "./new-certificate/policy.js";
import { setupTabs } from "./new-certificate/tabs.js";
import { setupCopyButtons } from "./portal/copy-buttons.js";

function csrfToken(root) {
  const input = root.querySelector('input[name="csrfmiddlewaretoken"]') || document.querySelector('input[name="csrfmiddlewaretoken"]');
  if (input && input.value) return input.value;
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

/** The API hostnames (json_script #api-hostnames) for the zip's README; none is fine. */
function apiHostnames() {
  try {
    return JSON.parse((byId("api-hostnames") || {}).textContent || "[]") || [];
  } catch {
    return [];
  }
}

async function loadPolicy(page) {
  try {
    const { policy, entries } = await fetchPolicy(page.policyUrl);
    page.policy = policy;
    const canGenerate = showPolicy(policy, entries);
    // At the user's maximum, in a full zone or before admission, nothing is made only to be refused: the buttons
    // stay disabled and the notice above them (rendered by the server) says what to do.
    byId("create-button").disabled = !(canGenerate && mayIssue(policy));
    byId("paste-submit").disabled = !mayIssue(policy);
  } catch (e) {
    page.errors.show(userMessage(e, "Could not load the certificate policy"));
  } finally {
    byId("policy-status").textContent = "";
  }
}

/**
 * After a certificate is issued here: the counts on the page follow (the policy is asked again), and when it
 * renews another certificate, the way to revoke that one (its confirmation page, told which certificate replaces it).
 */
async function afterIssued(page, issued) {
  const replace = byId("replace-old");
  const revokeUrl = byId("new-certificate").dataset.replacesRevokeUrl;
  if (replace && revokeUrl && issued && issued.id !== undefined) {
    byId("revoke-replaced").href = `${revokeUrl}?replacement=${encodeURIComponent(String(issued.id))}`;
    replace.hidden = false;
  }
  try {
    const { policy } = await fetchPolicy(page.policyUrl);
    page.policy = policy;
    showStanding(policy);
  } catch (e) {
    console.warn("could not refresh the certificate counts", e);
  }
}

/** Leaving the page before the generated key is saved loses it for good: the browser asks first. */
function guardUnsavedKey(page) {
  window.addEventListener("beforeunload", (ev) => {
    if (page.generated && !page.generated.keySaved) {
      ev.preventDefault();
      ev.returnValue = "";
      return "";
    }
    return undefined;
  });
}

function init() {
  const root = byId("new-certificate");
  if (!root) return;
  const csrf = csrfToken(root);
  const page = {
    policyUrl: root.dataset.policyUrl,
    issuing: { issueUrl: root.dataset.issueUrl, csrfToken: csrf },
    downloadEvents: { urlTemplate: root.dataset.downloadEventUrlTemplate, csrfToken: csrf },
    hostnames: apiHostnames(),
    errors: errorBanner(byId("error")),
    policy: null, // set once loaded; both forms wait for it
    busy: false, // one request at a time, from either form
    generated: null, // the key made here and its certificate (see makeCertificate)
  };
  byId("create-button").disabled = true;
  byId("paste-submit").disabled = true;

  setupTabs([byId("tab-generate"), byId("tab-paste")], page.errors.clear);
  guardUnsavedKey(page);
  setupGenerate(page, (generated) => {
    page.generated = generated;
    offerDownloads(generated);
    afterIssued(page, generated.issued);
  });
  setupDownloads(page);
  setupPaste(page, (issued) => afterIssued(page, issued));
  setupCopyButtons(document);
  const dashboardUrl = root.dataset.dashboardUrl;
  if (dashboardUrl) for (const link of document.querySelectorAll("[data-dashboard-link]")) link.href = dashboardUrl;
  loadPolicy(page);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
