import { defaultServerConditions } from "vite"
import { defineConfig } from "vitest/config"

export default defineConfig({
  // Tests import the workspace packages from their sources, not their builds.
  ssr: { resolve: { conditions: ["sluice-source", ...defaultServerConditions], externalConditions: ["sluice-source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
