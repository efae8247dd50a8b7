// The certificate policy (GET policy_url): subject, key types, validity choices, the user's standing.
// Until it has loaded, neither form can be submitted.
import { failureMessage, requestJson } from "../api.js";
import { byId } from "../dom.js";
import { KEY_TYPES, isSupportedKeyType } from "../keys.js";
import { subjectEntries, subjectText } from "../subject.js";
import { UserError } from "./errors.js";

export function validityLabel(days) {
  if (days === 365) return "365 days (1 year)";
  if (days % 30 === 0 && days < 365) return `${days} days (${days / 30} month${days === 30 ? "" : "s"})`;
  return `${days} days`;
}

/** The validity choices offered and the one preselected (the policy's default, else the longest listed last). */
export function validityOptions(validity) {
  const choices = validity && Array.isArray(validity.choices) && validity.choices.length ? validity.choices : [365];
  const selected = validity && choices.includes(validity.default) ? validity.default : choices[choices.length - 1];
  return { options: choices.map((days) => ({ value: String(days), label: validityLabel(days) })), selected: String(selected) };
}

/** The key types offered (those of the policy this browser code can make) and the one preselected. */
export function keyTypeOptions(policy) {
  const offered = Array.isArray(policy.key_types) && policy.key_types.length
    ? policy.key_types.filter((k) => k && isSupportedKeyType(k.id))
    : Object.keys(KEY_TYPES).map((id) => ({ id, label: KEY_TYPES[id].label }));
  const selected = offered.some((k) => k.id === policy.default_key_type) ? policy.default_key_type : offered[0] && offered[0].id;
  return { options: offered.map((k) => ({ value: k.id, label: k.label || KEY_TYPES[k.id].label })), selected };
}

/** "N of M" active certificates, and whether that is the most allowed; null when the policy does not say. */
export function standing(policy) {
  const active = Number(policy.active_certificates);
  const max = Number(policy.max_active_certificates);
  if (!Number.isFinite(active) || !Number.isFinite(max)) return null;
  return { active: `${active} of ${max}`, held: active, full: active >= max };
}

/**
 * Whether a certificate can be issued now: admitted, under the user's maximum, and room in the zone. When not,
 * the page says why (the server renders the notice) and no key is made only to be refused.
 */
export function mayIssue(policy) {
  const current = standing(policy);
  const admitted = !policy.admission || policy.admission.admitted !== false;
  return admitted && !(current && current.full) && policy.zone_room !== 0;
}

/** Brings the page's counts up to date (after issuing here): "N of M", the dashboard box, the limit notice. */
export function showStanding(policy, root = document) {
  const current = standing(policy);
  if (!current) return;
  byId("policy-active").textContent = current.active;
  const held = root.querySelector('[data-testid="held"]');
  if (held) held.textContent = String(current.held);
  const room = root.querySelector('[data-testid="zone-room"]');
  if (room && Number.isFinite(policy.zone_room)) room.textContent = String(policy.zone_room);
  const full = root.querySelector('[data-testid="user-full"]');
  if (full) full.hidden = !current.full;
  for (const another of root.querySelectorAll("[data-create-another]")) another.hidden = !mayIssue(policy);
}

/** The policy and its subject entries; a UserError says why it cannot be used. */
export async function fetchPolicy(url) {
  const result = await requestJson(url);
  if (!result.ok || !result.data || !result.data.subject) {
    throw new UserError(`Could not load the certificate policy: ${failureMessage(result)} Reload the page to try again.`);
  }
  // subjectEntries throws (with a message for the user) when the subject has no common name.
  try {
    return { policy: result.data, entries: subjectEntries(result.data.subject) };
  } catch (e) {
    throw new UserError(e.message);
  }
}

function fillSelect(select, { options, selected }) {
  select.replaceChildren();
  for (const { value, label } of options) select.add(new Option(label, value, value === selected, value === selected));
  return options.length > 0;
}

/** Shows the policy and fills both forms' choices; returns whether a key can be generated here. */
export function showPolicy(policy, entries) {
  byId("policy-subject").textContent = subjectText(entries);
  showStanding(policy);
  byId("policy-summary").hidden = false;
  const canGenerate = fillSelect(byId("key-type"), keyTypeOptions(policy));
  fillSelect(byId("validity"), validityOptions(policy.validity_days));
  fillSelect(byId("paste-validity"), validityOptions(policy.validity_days));
  return canGenerate;
}
