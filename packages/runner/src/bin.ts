/**
 * Entry point of the `sluice` command: the CLI (Cli.ts) run by Main.ts.
 */
import { cli } from "./Cli.js"
import { main } from "./Main.js"

main(cli)
