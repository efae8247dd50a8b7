// The networks textarea as lines: adding a network once, and finding a line the server's messages name.
// Pure functions of the text, so that Node tests them without a DOM.

/** The networks a line holds: before its comment, separated by spaces or commas (as the server reads them). */
const networksOn = (line) => line.split("#", 1)[0].split(/[\s,;]+/).filter(Boolean);

/**
 * The text with `network` on a line of its own at the end, unless a line already holds exactly it.
 * (Only the same text counts: 203.0.113.7 and 203.0.113.7/32 are the same network, which the server merges.)
 * @returns {{text: string, added: boolean}}
 */
export function withNetwork(text, network) {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.some((line) => networksOn(line).includes(network))) return { text, added: false };
  const body = text.replace(/\s+$/, "");
  return { text: body ? `${body}\n${network}\n` : `${network}\n`, added: true };
}

/**
 * Where line `number` (from 1, as the server counts: blank lines and comments included) starts and ends in
 * the text, for setSelectionRange; null when the text has fewer lines.
 * @returns {[number, number] | null}
 */
export function lineRange(text, number) {
  if (!Number.isInteger(number) || number < 1) return null;
  // As the server splits (certificates.allowlist.lines_of): at \r\n, \r or \n.
  const pattern = /\r\n|\r|\n/g;
  let start = 0;
  for (let line = 1; line < number; line += 1) {
    const match = pattern.exec(text);
    if (!match) return null;
    start = match.index + match[0].length;
  }
  pattern.lastIndex = start;
  const end = pattern.exec(text);
  return [start, end ? end.index : text.length];
}
