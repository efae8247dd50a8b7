// Small byte/text helpers shared by the browser bundle and the Node tests.

/** @param {ArrayBuffer|ArrayBufferView} data */
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/** A fresh ArrayBuffer holding exactly these bytes (for APIs that want an ArrayBuffer). */
export function toArrayBuffer(data) {
  const bytes = toBytes(data);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

export function concatBytes(...parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function toBase64(data) {
  const bytes = toBytes(data);
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

export function fromBase64(text) {
  const binary = atob(text.replace(/\s+/g, ""));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function toHex(data) {
  return Array.from(toBytes(data), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** PEM with 64-character lines and a trailing newline, as OpenSSL writes it. */
export function pemEncode(der, label) {
  const lines = toBase64(der).match(/.{1,64}/g) || [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every PEM block in a text: [{label, der, pem}]. */
export function pemBlocks(text) {
  const blocks = [];
  for (const m of String(text).matchAll(PEM_BLOCK)) {
    blocks.push({ label: m[1], der: fromBase64(m[2]), pem: m[0] });
  }
  return blocks;
}

/** DER of the first PEM block with one of these labels, or null. */
export function pemDecode(text, labels) {
  const wanted = Array.isArray(labels) ? labels : [labels];
  const block = pemBlocks(text).find((b) => wanted.includes(b.label));
  return block ? block.der : null;
}
