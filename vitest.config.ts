import { availableParallelism } from "node:os"
import { defaultServerConditions } from "vite"
import { defineConfig } from "vitest/config"

export default defineConfig({
  // Tests import the workspace packages from their sources, not their builds. Dependencies
  // resolve as Node resolves them: without vite's `module` condition, which picks builds meant
  // for bundlers (@opentelemetry/api's ESM build has extensionless imports Node cannot load).
  ssr: {
    resolve: {
      conditions: ["sluice-source", ...defaultServerConditions.filter((c) => c !== "module")],
      externalConditions: ["sluice-source"]
    }
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    // Each test decides about the response cache: off unless it names a directory, so runs
    // of different tests never answer each other's requests.
    // Type checking a pipeline file costs seconds per CLI call: off, except in the tests
    // that are about it (test/typecheck.e2e.test.ts).
    // `sluice status` waits 2 s for the provider by default; a saturated machine may need more,
    // and no test may depend on a wall-clock window (test/status-refresh.e2e.test.ts sets its own).
    env: { SLUICE_CACHE: "off", SLUICE_TYPECHECK: "off", SLUICE_STATUS_REFRESH_SECONDS: "120" },
    // Most of a CLI test's time is spent waiting on child processes and the emulator: vitest's
    // default of (cores - 1) workers would run the files one at a time on a 2-core CI runner.
    maxWorkers: Math.max(2, availableParallelism()),
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
