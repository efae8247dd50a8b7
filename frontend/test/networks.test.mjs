// The networks page's text helpers (frontend/src/networks/lines.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { lineRange, withNetwork } from "../src/networks/lines.js";

test("a network is added on a line of its own at the end", () => {
  assert.deepEqual(withNetwork("", "203.0.113.7/32"), { text: "203.0.113.7/32\n", added: true });
  assert.deepEqual(withNetwork("198.51.100.0/24", "203.0.113.7/32"), {
    text: "198.51.100.0/24\n203.0.113.7/32\n",
    added: true,
  });
  assert.deepEqual(withNetwork("198.51.100.0/24\n\n  \n", "2001:db8::1/128").text, "198.51.100.0/24\n2001:db8::1/128\n");
});

test("a network already on a line, a comment or spaces around it, is not added again", () => {
  const text = "# office\n  203.0.113.7/32   # my laptop\n";
  assert.deepEqual(withNetwork(text, "203.0.113.7/32"), { text, added: false });
  assert.equal(withNetwork("198.51.100.0/24, 203.0.113.7/32", "203.0.113.7/32").added, false);
  // Only the whole network counts: a longer one that starts the same is another network.
  assert.equal(withNetwork("203.0.113.7/320", "203.0.113.7/32").added, true);
  // A network mentioned in a comment is not in the list.
  assert.equal(withNetwork("# 203.0.113.7/32", "203.0.113.7/32").added, true);
});

test("a line is found as the server counts lines, blank lines and comments included", () => {
  const text = "# office\n\n10.0.0.300/8\r\nlast";
  assert.deepEqual(lineRange(text, 1), [0, 8]);
  assert.deepEqual(lineRange(text, 2), [9, 9]);
  assert.equal(text.slice(...lineRange(text, 3)), "10.0.0.300/8");
  assert.equal(text.slice(...lineRange(text, 4)), "last");
  assert.equal(lineRange(text, 5), null);
  assert.equal(lineRange(text, 0), null);
});
