/**
 * Where a run's journal is, as its directory says — plain Node, so that bin/sluice.js
 * (QuickAnswer.ts) can tell before Effect loads, and one check for every caller.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs"
import { join } from "node:path"

/**
 * The one line of the journal.jsonl of a run whose journal is in a cluster's database
 * (JournalPg.ts writes it when it opens the run's journal there). Not an event: a version of
 * sluice from before journals moved there fails on it (JournalCorrupt at line 1) instead of
 * taking the run for one with no events and planning it again; and should such a version
 * rewrite the manifest without its `journal`, this line still says where the journal is.
 */
export const inDatabaseLine = JSON.stringify({
  _tag: "JournalInDatabase",
  note: "this run's journal is in its cluster's PostgreSQL database (table sluice_journal): use sluice with --cluster or SLUICE_DATABASE_URL, of a version that reads it there"
})

/** Whether the file at `path` begins with the marker (its first bytes only: a journal of events may be large). Unreadable: false. */
export const hasMarker = (path: string): boolean => {
  try {
    const fd = openSync(path, "r")
    try {
      const head = Buffer.alloc(Buffer.byteLength(inDatabaseLine))
      return head.toString("utf8", 0, readSync(fd, head, 0, head.length, 0)) === inDatabaseLine
    } finally {
      closeSync(fd)
    }
  } catch {
    return false
  }
}

/** Whether the run at `root` keeps its journal in a database: its manifest's `journal`, else the marker. Unreadable: false. */
export const keptInDatabase = (root: string): boolean => {
  let journal: unknown
  try {
    journal = (JSON.parse(readFileSync(join(root, "manifest.json"), "utf8")) as { readonly journal?: unknown }).journal
  } catch {
    return false
  }
  return journal === "postgres" || (journal !== "file" && hasMarker(join(root, "journal.jsonl")))
}

/** Whether the run at `root` has its files held by its cluster's database (its manifest's `files`: RunFiles.ts). Unreadable: false. */
export const filesInDatabase = (root: string): boolean => {
  try {
    return (JSON.parse(readFileSync(join(root, "manifest.json"), "utf8")) as { readonly files?: unknown }).files === "postgres"
  } catch {
    return false
  }
}
