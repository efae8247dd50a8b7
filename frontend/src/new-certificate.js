// The "new certificate" page. The private key is generated here with WebCrypto and never leaves the
// browser: the only things sent are the CSR (to issue_url) and download audit events ({"format": ...}).
// This entry reads the page's URLs from the data attributes of #new-certificate and wires the modules
// in new-certificate/: policy, tabs, generate (with its progress steps and downloads) and paste.
import { byId } from "./dom.js";
import { offerDownloads, setupDownloads } from "./new-certificate/downloads.js";
import { errorBanner, userMessage } from "./new-certificate/errors.js";
import { setupGenerate } from "./new-certificate/generate.js";
import { setupPaste } from "./new-certificate/paste.js";
import { fetchPolicy, showPolicy } from "./new-certificate/policy.js";
import { setupTabs } from "./new-certificate/tabs.js";

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
    byId("create-button").disabled = !showPolicy(policy, entries);
    byId("paste-submit").disabled = false;
  } catch (e) {
    page.errors.show(userMessage(e, "Could not load the certificate policy"));
  } finally {
    byId("policy-status").textContent = "";
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
  });
  setupDownloads(page);
  setupPaste(page);
  const dashboardUrl = root.dataset.dashboardUrl;
  if (dashboardUrl) for (const link of document.querySelectorAll("[data-dashboard-link]")) link.href = dashboardUrl;
  loadPolicy(page);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
