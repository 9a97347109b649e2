// Builds the dashboard page into src/runfleet/dashboard/static (generated, not committed):
// app.js (TypeScript bundled and minified by esbuild, uPlot included), app.css (our styles
// plus uPlot's), index.html; and the API page: docs.js (Swagger UI from swagger-ui-dist, with
// docs.ts), docs.css (Swagger UI's), docs.html. Usage: `node build.mjs` (or `npm run build`)
// in frontend/.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "runfleet", "dashboard", "static");
mkdirSync(out, { recursive: true });

const common = { bundle: true, minify: true, format: "esm", target: ["es2022"], outdir: out,
                 logLevel: "warning" };
await build({ ...common, entryPoints: { app: join(here, "src", "main.ts") },
              sourcemap: "linked" });
// Swagger UI comes minified already: no source map (it would weigh 4 MB in the package)
await build({ ...common, entryPoints: { docs: join(here, "src", "docs.ts") } });
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
copyFileSync(join(here, "src", "docs.html"), join(out, "docs.html"));
copyFileSync(join(here, "node_modules", "swagger-ui-dist", "swagger-ui.css"),
             join(out, "docs.css"));
console.log(`built the dashboard front end into ${out}`);
