#!/usr/bin/env node
/**
 * Adds package-lock entries for optional platform binaries (rollup, msgpackr-extract …) that
 * the npm registry mirror of our workplace does not carry, so `npm install` leaves them out of
 * the lock and `npm ci` then refuses the lock as out of sync. Each added entry names its os,
 * cpu and libc, so npm skips it on other platforms and never downloads it.
 *
 * Run after `npm install` changed the lock:  node scripts/complete-lockfile.mjs
 */
import { readFileSync, writeFileSync } from "node:fs"

const file = new URL("../package-lock.json", import.meta.url)
const lock = JSON.parse(readFileSync(file, "utf8"))
const packages = lock.packages

const oses = ["android", "darwin", "freebsd", "linux", "openbsd", "openharmony", "win32", "sunos", "aix", "netbsd"]
const cpus = ["arm64", "arm", "x64", "ia32", "loong64", "ppc64", "riscv64", "s390x", "mips64el"]

const platformOf = (name) => {
  const parts = name.split("/").pop().split("-")
  const os = parts.find((p) => oses.includes(p))
  const cpu = parts.find((p) => cpus.includes(p)) ?? (parts.includes("eabi") || parts.includes("gnueabihf") || parts.includes("musleabihf") ? "arm" : undefined)
  if (os === undefined || cpu === undefined) return undefined
  const libc = os !== "linux" ? undefined : parts.some((p) => p.startsWith("musl")) ? "musl" : parts.some((p) => p.startsWith("gnu")) ? "glibc" : undefined
  return { os, cpu, libc }
}

let added = 0
for (const [path, entry] of Object.entries(packages)) {
  for (const [dep, spec] of Object.entries(entry.optionalDependencies ?? {})) {
    // npm looks for the dependency next to its parent, then hoisted at the root.
    const nested = `${path === "" ? "" : path + "/"}node_modules/${dep}`
    if (packages[nested] !== undefined || packages[`node_modules/${dep}`] !== undefined) continue
    const platform = platformOf(dep)
    if (platform === undefined || !/^\d+\.\d+\.\d+/.test(spec)) continue
    packages[`node_modules/${dep}`] = {
      version: spec,
      cpu: [platform.cpu],
      optional: true,
      os: [platform.os],
      ...(platform.libc === undefined ? {} : { libc: [platform.libc] })
    }
    added++
  }
}
lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0)))
writeFileSync(file, JSON.stringify(lock, null, 2) + "\n")
console.log(`complete-lockfile: added ${added} optional platform entries`)
