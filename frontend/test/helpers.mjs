// Test helpers: external verifiers (Python `cryptography`, openssl) when they are on the machine.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

function findPython() {
  const candidates = [process.env.PYTHON, join(here, "..", "..", ".venv", "bin", "python"), "python3"].filter(Boolean);
  for (const c of candidates) {
    const r = spawnSync(c, ["-c", "import cryptography"], { stdio: "ignore" });
    if (r.status === 0) return c;
  }
  return null;
}

export const PYTHON = findPython();
export const OPENSSL = spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0 ? "openssl" : null;

/** Run a Python snippet with JSON on stdin; returns its parsed JSON stdout. */
export function python(code, input) {
  const out = execFileSync(PYTHON, ["-c", code], { input: JSON.stringify(input), maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(out.toString());
}

/** Run openssl; returns stdout + stderr (where `pkcs12 -info` writes the algorithms); throws on failure. */
export function openssl(args) {
  const r = spawnSync(OPENSSL, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout + r.stderr;
}

export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), "ncert-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const POLICY_SUBJECT = {
  common_name: "portal-user-42",
  organization: "Example Inc.",
  organizational_unit: "API Developers",
};

export { existsSync };
