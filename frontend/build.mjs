// Bundles every page script in src/ into ../static/js/ (one IIFE per page, minified, license comments
// kept); the bundles are committed so that running the portal needs no Node:
//   src/new-certificate.js -> static/js/new-certificate.js  (the new-certificate page)
//   src/portal.js          -> static/js/portal.js           (copy buttons, pending status; other pages)
//   src/networks.js        -> static/js/networks.js         (the networks page)
// Usage: npm run build            (npm run build -- --watch to rebuild on change)
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { statSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = join(here, "..", "static", "js");
const PAGE_SCRIPTS = ["networks", "new-certificate", "portal"];

const options = {
  entryPoints: PAGE_SCRIPTS.map((name) => join(here, "src", `${name}.js`)),
  outdir,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: ["es2020", "chrome90", "firefox90", "safari15"],
  minify: true,
  // No sourcemap: it would be larger than the bundle itself (~600 KiB); the sources are in frontend/src.
  sourcemap: false,
  legalComments: "eof",
  logLevel: "info",
  banner: { js: "/* Built from frontend/src by `npm run build`; do not edit. */" },
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
  for (const name of PAGE_SCRIPTS) {
    const outfile = join(outdir, `${name}.js`);
    console.log(`${outfile}: ${(statSync(outfile).size / 1024).toFixed(1)} KiB`);
  }
}
