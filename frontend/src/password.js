// A strong random password for the PKCS#12 file, without look-alike characters.
const ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

export function generatePassword(length = 20) {
  const out = [];
  const limit = 256 - (256 % ALPHABET.length); // rejection sampling: no modulo bias
  while (out.length < length) {
    const bytes = new Uint8Array(length * 2);
    globalThis.crypto.getRandomValues(bytes);
    for (const b of bytes) {
      if (b < limit && out.length < length) out.push(ALPHABET[b % ALPHABET.length]);
    }
  }
  return out.join("");
}

/** null when fine, or a message. */
export function passwordProblem(password, confirmation, minLength = 8) {
  if (!password) return "Choose a password for the PKCS#12 file.";
  if (password.length < minLength) return `The PKCS#12 password must be at least ${minLength} characters.`;
  if (password !== confirmation) return "The two PKCS#12 passwords do not match.";
  return null;
}
