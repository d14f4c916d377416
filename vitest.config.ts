import { defineConfig } from "vitest/config"

export default defineConfig({
  // Tests import the workspace packages from their sources, not their builds.
  resolve: { conditions: ["sluice-source"] },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
