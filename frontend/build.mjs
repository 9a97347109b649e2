// Builds the dashboard page into src/runfleet/dashboard/static (generated, not committed):
// app.js (TypeScript bundled and minified by esbuild, uPlot included), app.css (our styles
// plus uPlot's), index.html. Usage: `node build.mjs` (or `npm run build`) in frontend/.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "runfleet", "dashboard", "static");
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "esm",
  target: ["es2022"],
  outdir: out,
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
console.log(`built the dashboard front end into ${out}`);
