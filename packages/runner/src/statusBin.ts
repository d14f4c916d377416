/**
 * `sluice status <run-dir>` alone: the status command (StatusCommand.ts, the full CLI's own)
 * under a program that has no other, run by Main.ts as bin.ts runs the CLI. The build bundles
 * this file with everything it imports, effect included, into dist/status.bundle.cjs
 * (scripts/bundle-status.mjs), which statusMain.ts runs with a V8 code cache: one script starts
 * in a fraction of the time of ~930 modules, so status takes ~0.25 CPU s instead of ~1.
 * bin/sluice.js sends it only plain `status` arguments (QuickAnswer.statusOnly); everything else
 * goes to the full CLI.
 *
 * A bundled copy of effect is safe here only because status loads no user module: the pipeline
 * file is hashed, never imported. Never bundle a path that loads a pipeline file — its effect
 * would be another copy than sluice's.
 */
import { Command } from "@effect/cli"
import { runner } from "./internal/Installed.js"
import { main } from "./Main.js"
import { statusCommand } from "./StatusCommand.js"

const app = Command.run(Command.make("sluice").pipe(Command.withSubcommands([statusCommand])), { name: "sluice", version: runner.version })

main(app)
