/**
 * File system errors as a person reads them: what sluice was doing, on which path, and why
 * not — "cannot create directory /data/runs: permission denied (EACCES)".
 */

/** The fields of @effect/platform's SystemError that a message needs. */
export interface SystemErrorLike {
  readonly _tag: "SystemError"
  readonly reason: string
  readonly method: string
  readonly pathOrDescriptor?: string | number | undefined
  readonly description?: string | undefined
}

export const isSystemError = (u: unknown): u is SystemErrorLike =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "SystemError" &&
  typeof (u as { method?: unknown }).method === "string"

/**
 * "permission denied (EACCES)", "no space left on device (ENOSPC)": Node's own words from its
 * message ("EACCES: permission denied, mkdir '…'"), without the syscall and path.
 */
export const ioProblem = (description: string | undefined, fallback = "I/O error"): string => {
  const m = /^([A-Z][A-Z0-9]+): ([^,]+)/.exec(description ?? "")
  return m === null ? (description ?? fallback) : `${m[2]!.trim()} (${m[1]})`
}

const doing: Readonly<Record<string, string>> = {
  makeDirectory: "cannot create directory",
  makeTempDirectory: "cannot create a directory in",
  open: "cannot open",
  readFile: "cannot read",
  readFileString: "cannot read",
  readDirectory: "cannot list",
  stream: "cannot read",
  writeFile: "cannot write",
  writeFileString: "cannot write",
  write: "cannot write",
  writeAll: "cannot write",
  sync: "cannot write",
  truncate: "cannot truncate",
  rename: "cannot rename",
  remove: "cannot remove",
  copy: "cannot copy",
  stat: "cannot access",
  access: "cannot access",
  exists: "cannot access"
}

/** "cannot create directory /data/runs: permission denied (EACCES)". */
export const describeSystemError = (e: SystemErrorLike): string => {
  const what = doing[e.method] ?? `${e.method} failed on`
  const where =
    e.pathOrDescriptor === undefined ? "" : typeof e.pathOrDescriptor === "number" ? ` file descriptor ${e.pathOrDescriptor}` : ` ${e.pathOrDescriptor}`
  return `${what}${where}: ${ioProblem(e.description, e.reason)}`
}
