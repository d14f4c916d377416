#!/usr/bin/env node
/**
 * Writes dist/help.json, from which bin/sluice.js answers `sluice --help`, `sluice <command>
 * --help` and `sluice --version` without loading Effect (src/QuickAnswer.ts): the help as the
 * real CLI's command definitions describe it, and the real CLI's `--version` output. Run after
 * tsc by the root `npm run build` and by this package's prepack.
 */
import { execFileSync } from "node:child_process"
import { renameSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const dist = new URL("../dist/", import.meta.url)
const { program } = await import(new URL("Cli.js", dist).href)
const { describe } = await import(new URL("internal/help.js", dist).href)

// dist/bin.js is the real CLI, without bin/sluice.js's quick answers.
const versionOutput = execFileSync(process.execPath, [fileURLToPath(new URL("bin.js", dist)), "--version"], { encoding: "utf8" })
if (!versionOutput.endsWith("\n")) throw new Error(`write-help: unexpected \`sluice --version\` output ${JSON.stringify(versionOutput)}`)

// Written aside and renamed into place: a CLI reading it meanwhile (npm pack's prepack during the
// tests) sees the old file or the new one, never half of one.
const target = new URL("help.json", dist)
const aside = new URL(`help.json.${process.pid}.tmp`, dist)
writeFileSync(aside, `${JSON.stringify({ help: describe(program), versionOutput })}\n`)
renameSync(aside, target)
