#!/usr/bin/env node
/**
 * Bundles dist/statusBin.js (`sluice status` alone) with everything it imports, effect
 * included, into dist/status.bundle.mjs, which bin/sluice.js runs for plain `status` arguments:
 * one file compiles much faster than the ~930 modules of the full CLI (~0.4 against ~1 CPU s on
 * Node 20; BENCHMARKS.md, *Start-up and memory*). Why a bundled effect is safe there: see
 * src/statusBin.ts. Run after tsc by the root `npm run build` and by this package's prepack.
 *
 * sluice's own modules find files next to themselves (package.json, data/prices.json, the
 * installed effect) through `import.meta.url`; in the bundle each one's `import.meta.url` is
 * rewritten to its own file's URL, relative to the bundle — the same in this repository
 * (packages/<name>/dist) and in an installation (node_modules/@sluice/<name>/dist). A module of
 * any other package that used `import.meta.url` would have no such place: the build fails.
 */
import { build } from "esbuild"
import { readFile } from "node:fs/promises"
import { dirname, relative, sep } from "node:path"
import { fileURLToPath } from "node:url"

const dist = fileURLToPath(new URL("../dist/", import.meta.url))
const outfile = `${dist}status.bundle.mjs`
const ownDist = /[/\\]packages[/\\](core|emulator|providers|runner)[/\\]dist[/\\]/

const foreign = []
const ownFileUrls = {
  name: "own-file-urls",
  setup(b) {
    b.onLoad({ filter: /\.(m?js|cjs)$/ }, async (args) => {
      const contents = await readFile(args.path, "utf8")
      if (!contents.includes("import.meta.url")) return undefined
      if (!ownDist.test(args.path)) {
        foreign.push(args.path)
        return undefined
      }
      const rel = relative(dirname(outfile), args.path).split(sep).join("/")
      return { contents: contents.replaceAll("import.meta.url", `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: "js" }
    })
  }
}

// A run whose journal is in a cluster's database goes to the full CLI (QuickAnswer.ts `programFor`):
// the bundle holds no database client, only a stub that says so should it be reached anyway.
const noDatabase = {
  name: "no-database",
  setup(b) {
    b.onResolve({ filter: /^\.\/JournalPg\.js$/ }, () => ({ path: "JournalPg", namespace: "no-database" }))
    b.onLoad({ filter: /.*/, namespace: "no-database" }, () => ({
      contents: 'export const layer = () => { throw new Error("the bundled status program holds no database client: run `sluice status` through bin/sluice.js") }',
      loader: "js"
    }))
  }
}

await build({
  entryPoints: [`${dist}statusBin.js`],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // CommonJS dependencies (undici …) call require(): give the ES module one.
  banner: { js: 'import { createRequire as __sluiceCreateRequire } from "node:module"; const require = __sluiceCreateRequire(import.meta.url);' },
  plugins: [ownFileUrls, noDatabase],
  logLevel: "warning",
  legalComments: "none"
})
if (foreign.length > 0) {
  console.error(`bundle-status: these modules use import.meta.url, which the bundle would change:\n${foreign.join("\n")}`)
  process.exit(1)
}
