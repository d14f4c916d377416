/**
 * `sluice status <run-dir>`: a module of its own so that the status-only program
 * (statusBin.ts, bundled by the build) holds the same command as the full CLI.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Option } from "effect"
import * as Flags from "./Flags.js"
import * as ClusterJournal from "./ClusterJournal.js"
import { reported } from "./internal/reported.js"
import * as Pricing from "./Pricing.js"
import * as Status from "./Status.js"

export const statusCommand = Command.make(
  "status",
  {
    runDir: Flags.runDirArg,
    json: Flags.json,
    prices: Flags.prices,
    cluster: Flags.clusterJournal,
    noRefresh: Options.boolean("no-refresh").pipe(Options.withDescription("report from the run directory only"))
  },
  ({ cluster, runDir, json, noRefresh, prices }) =>
    reported(json, () =>
      Effect.gen(function* () {
        const priceTable = yield* Pricing.load(Option.getOrUndefined(prices))
        // A run on a cluster: the cluster's ledger of enqueued tokens and batches beside its own.
        const clusterLedger = yield* ClusterJournal.ledgerFor(runDir, cluster)
        const s = yield* Status.status(runDir, { refresh: !noRefresh, prices: priceTable, clusterLedger }).pipe(ClusterJournal.provideFor([runDir], cluster))
        yield* json ? Console.log(JSON.stringify(s, null, 2)) : Console.log(Status.render(s))
      })
    )
).pipe(Command.withDescription("Report a run's state from its directory, refreshing batch statuses from the provider when it can."))
