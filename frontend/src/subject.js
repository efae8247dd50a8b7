// The CSR subject the portal's policy demands: exactly O, OU and CN (O and OU only when non-empty),
// in the order of the policy's openssl command (/O=.../OU=.../CN=...).

export const OID = Object.freeze({
  commonName: "2.5.4.3",
  organizationName: "2.5.4.10",
  organizationalUnitName: "2.5.4.11",
});

const SHORT = { [OID.commonName]: "CN", [OID.organizationName]: "O", [OID.organizationalUnitName]: "OU" };

/**
 * @param {{common_name: string, organization?: string, organizational_unit?: string}} subject
 * @returns {{oid: string, short: string, value: string}[]}
 */
export function subjectEntries(subject) {
  if (!subject || typeof subject.common_name !== "string" || subject.common_name.trim() === "") {
    throw new Error("The certificate policy has no common name for you.");
  }
  const entries = [];
  const add = (oid, value) => {
    if (typeof value === "string" && value !== "") entries.push({ oid, short: SHORT[oid], value });
  };
  add(OID.organizationName, subject.organization);
  add(OID.organizationalUnitName, subject.organizational_unit);
  add(OID.commonName, subject.common_name);
  return entries;
}

/** Human-readable form, e.g. "O=Example Inc., OU=API Developers, CN=portal-user-42". */
export function subjectText(entries) {
  return entries.map((e) => `${e.short}=${e.value}`).join(", ");
}

/**
 * Compare the subject of a pasted CSR ([{oid, value}]) with what the policy demands.
 * Returns a list of human-readable problems (empty when it matches).
 */
export function subjectProblems(actual, policySubject) {
  const expected = subjectEntries(policySubject);
  const problems = [];
  for (const e of expected) {
    const found = actual.filter((a) => a.oid === e.oid).map((a) => a.value);
    if (found.length === 0) problems.push(`${e.short} is missing (it must be "${e.value}")`);
    else if (found.length > 1 || found[0] !== e.value) problems.push(`${e.short} is "${found.join('", "')}" but must be "${e.value}"`);
  }
  for (const a of actual) {
    if (!expected.some((e) => e.oid === a.oid)) problems.push(`${SHORT[a.oid] || a.oid}="${a.value}" is not allowed`);
  }
  return problems;
}
