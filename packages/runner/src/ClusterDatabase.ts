/**
 * The cluster's PostgreSQL database as the commands name it and fail on it: its address without
 * credentials, and the error when it cannot be reached. Apart from Cluster.ts so that commands
 * that only read a cluster run's journal (`status`, `report`, `ui`, `gc`: JournalPg.ts) need not
 * load the cluster.
 */
import { Redacted, Schema } from "effect"

/** The cluster's database cannot be reached (or its tables created). */
export class ClusterUnavailable extends Schema.TaggedError<ClusterUnavailable>()("ClusterUnavailable", {
  database: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `cannot use the cluster's PostgreSQL database ${this.database}: ${this.description}`
  }
}

/** Host, port and database of a URL, never its credentials. */
export const databaseOf = (url: Redacted.Redacted): string => {
  try {
    const u = new URL(Redacted.value(url))
    return `${u.hostname}:${u.port === "" ? "5432" : u.port}${u.pathname}`
  } catch {
    return "(not a URL: postgres://user@host:port/database)"
  }
}

/** What went wrong with the database, from the deepest cause that says (ECONNREFUSED, a refused password …). */
export const unavailable = (url: Redacted.Redacted) => (e: { readonly message: string; readonly cause?: unknown }) => {
  let cause: unknown = e
  let text = e.message
  while (typeof cause === "object" && cause !== null && "cause" in cause && cause.cause !== undefined) {
    cause = cause.cause
    if (cause instanceof Error && cause.message !== "") text = cause.message
  }
  return new ClusterUnavailable({ database: databaseOf(url), description: text.split(Redacted.value(url)).join("<url>") })
}
