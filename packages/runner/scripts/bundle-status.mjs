#!/usr/bin/env node
/**
 * Bundles dist/statusBin.js (`sluice status` alone) with everything it imports, effect
 * included, into dist/status.bundle.cjs, which bin/sluice.js runs for plain `status` arguments
 * (through dist/statusMain.js). One script with a V8 code cache starts in a fraction of the time
 * of the ~930 modules of the full CLI (BENCHMARKS.md, *Start-up and memory*). Why a bundled
 * effect is safe there: see src/statusBin.ts. Run after tsc by the root `npm run build` and by
 * this package's prepack.
 *
 * The file is one function expression,
 * `(function (require, module, exports, __filename, __dirname, __sluiceScriptUrl) { … })`: a
 * script, not a module, because Node 20 caches compiled code only for scripts (`vm.Script`'s
 * `cachedData`; src/internal/codeCache.ts runs it).
 *
 * - sluice's own modules find files next to themselves (package.json, data/prices.json)
 *   through `import.meta.url`; in the bundle each one's is rewritten to its own file's URL,
 *   relative to the bundle — the same in this repository (packages/<name>/dist) and in an
 *   installation (node_modules/@sluice/<name>/dist). A module of any other package that used
 *   `import.meta.url` would have no such place: the build fails.
 * - A module sluice loads with `import()` (the OpenTelemetry exporter, tsx) is not status's:
 *   in its place is a module that fails when loaded. Bundled, it would wrap every module it
 *   imports — effect's included — in a lazy initialiser and keep them whole, unshaken.
 * - undici is loaded at the HTTP client's first request (status-bundle/undici.mjs), not when
 *   the program starts.
 * - Minified (whitespace and syntax; names are kept, some output shows them): less to read and
 *   to check against the cache. `--readable` leaves it as written, one module after another
 *   under its path: for reading a CPU profile of it.
 */
import { build } from "esbuild"
import { readdir, readFile, rename, rm } from "node:fs/promises"
import { dirname, relative, sep } from "node:path"
import { fileURLToPath } from "node:url"

const dist = fileURLToPath(new URL("../dist/", import.meta.url))
const outfile = `${dist}status.bundle.cjs`
const lazyUndici = fileURLToPath(new URL("./status-bundle/undici.mjs", import.meta.url))
const ownDist = /[/\\]packages[/\\](core|emulator|providers|runner)[/\\]dist[/\\]/

const readable = process.argv.includes("--readable")
const foreign = []
const ownFileUrls = {
  name: "own-file-urls",
  setup(b) {
    b.onLoad({ filter: /\.(m?js|cjs)$/, namespace: "file" }, async (args) => {
      const contents = await readFile(args.path, "utf8")
      if (!contents.includes("import.meta.url")) return undefined
      if (!ownDist.test(args.path)) {
        foreign.push(args.path)
        return undefined
      }
      const rel = relative(dirname(outfile), args.path).split(sep).join("/")
      return { contents: contents.replaceAll("import.meta.url", `new URL(${JSON.stringify(rel)}, __sluiceScriptUrl).href`), loader: "js" }
    })
  }
}

const notLoaded = {
  name: "not-loaded",
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === "dynamic-import" && ownDist.test(args.importer)) return { path: args.path, namespace: "not-loaded" }
      if (args.path === "../Undici.js" && /[/\\]@effect[/\\]platform-node[/\\]dist[/\\]esm[/\\]internal[/\\]httpClientUndici\.js$/.test(args.importer)) {
        return { path: lazyUndici }
      }
      return undefined
    })
    b.onLoad({ filter: /.*/, namespace: "not-loaded" }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not part of the bundled status program (scripts/bundle-status.mjs)`)})`,
      loader: "js"
    }))
  }
}

await rm(`${dist}status.bundle.mjs`, { force: true }) // the module this script wrote before
// Code caches of the bundle it replaces (src/internal/codeCache.ts): never shipped (package.json `files`).
for (const file of await readdir(dist)) if (/^status\.bundle\.cjs\..*\.v8cache$/.test(file)) await rm(`${dist}${file}`, { force: true })
// Built aside and renamed into place, so that a status starting meanwhile never reads half a bundle.
const aside = `${outfile}.${process.pid}.tmp`
await build({
  entryPoints: [`${dist}statusBin.js`],
  outfile: aside,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  banner: { js: "(function (require, module, exports, __filename, __dirname, __sluiceScriptUrl) {" },
  footer: { js: "})" },
  plugins: [ownFileUrls, notLoaded],
  minifyWhitespace: !readable,
  minifySyntax: !readable,
  keepNames: true,
  logLevel: "warning",
  legalComments: "none"
})
if (foreign.length > 0) {
  await rm(aside, { force: true })
  console.error(`bundle-status: these modules use import.meta.url, which the bundle would change:\n${foreign.join("\n")}`)
  process.exit(1)
}
await rename(aside, outfile)
