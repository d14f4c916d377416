#!/usr/bin/env node
// Pipeline files are TypeScript: register tsx before loading the CLI, so they need no build.
import { register } from "tsx/esm/api"

register()
await import("../src/bin.ts")
