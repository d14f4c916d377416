#!/usr/bin/env node
/**
 * `prepack` of every workspace package (npm runs it in the package's directory before
 * `npm pack` and `npm publish`): the tarball ships `dist/` as built from `src/` now.
 *
 * 1. Removes outputs in dist/ whose source is gone (tsc -b never deletes them, and a module
 *    moved to another package would otherwise ship twice).
 * 2. Builds the package and the packages it references (tsc -b, incremental).
 * 3. Checks that every target of `exports`, `types` and `bin` exists, so a tarball never
 *    names a file it does not hold.
 */
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const pkgDir = process.cwd()
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"))
const src = join(pkgDir, "src")
const dist = join(pkgDir, "dist")

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]))

// dist/a/B.js, B.js.map, B.d.ts, B.d.ts.map all come from src/a/B.ts.
const outputSuffix = /(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/
let removed = 0
if (existsSync(dist)) {
  for (const file of walk(dist)) {
    if (!outputSuffix.test(file)) continue
    const source = join(src, relative(dist, file).replace(outputSuffix, ".ts"))
    if (!existsSync(source)) {
      rmSync(file)
      removed++
    }
  }
}
if (removed > 0) console.error(`prepack ${pkg.name}: removed ${removed} stale files from dist/`)

const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url))
execFileSync(process.execPath, [tsc, "-b", "tsconfig.build.json"], { cwd: pkgDir, stdio: "inherit" })

const targets = []
const collect = (value) => {
  if (typeof value === "string") targets.push(value)
  else if (value !== null && typeof value === "object") Object.values(value).forEach(collect)
}
collect(pkg.exports)
collect(pkg.types)
collect(pkg.bin)
const missing = targets.filter((t) => !existsSync(join(pkgDir, t)))
if (missing.length > 0) {
  console.error(`prepack ${pkg.name}: package.json names files that do not exist: ${missing.join(", ")}`)
  process.exit(1)
}
