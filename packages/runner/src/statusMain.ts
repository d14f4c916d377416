/**
 * Plain `sluice status <run-dir>`: bin/sluice.js imports this module for it (QuickAnswer.programFor)
 * instead of the full CLI. It runs dist/status.bundle.cjs — statusBin.ts and everything it
 * imports, effect included, bundled into one script by scripts/bundle-status.mjs — with a V8
 * code cache (internal/codeCache.ts): ~0.4 CPU s without either, ~1 for the full CLI.
 *
 * Plain Node only, like QuickAnswer.ts.
 */
import { fileURLToPath } from "node:url"
import { runScript } from "./internal/codeCache.js"

runScript(fileURLToPath(new URL("./status.bundle.cjs", import.meta.url)))
