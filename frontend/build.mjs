// Bundles src/new-certificate.js into ../static/js/new-certificate.js (IIFE, minified, license comments kept).
// Usage: npm run build            (npm run build -- --watch to rebuild on change)
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { statSync } from "node:fs";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, "..", "static", "js", "new-certificate.js");

const options = {
  entryPoints: [join(here, "src", "new-certificate.js")],
  outfile,
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
  console.log(`${outfile}: ${(statSync(outfile).size / 1024).toFixed(1)} KiB`);
}
