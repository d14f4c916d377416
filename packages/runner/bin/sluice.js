#!/usr/bin/env node
// The CLI runs from the build (npm ci builds it). Pipeline files are TypeScript: the CLI
// registers tsx just before loading one, so they need no build of their own.
import "../dist/bin.js"
