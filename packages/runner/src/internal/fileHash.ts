/** A file's SHA-256 (hex): how a run records its pipeline file, and how `status` checks it. */
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"

export const sha256Of = (file: string): string => createHash("sha256").update(readFileSync(file)).digest("hex")
