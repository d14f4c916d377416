/**
 * The lines a row leaves in a run directory between planning and collection: shared by the
 * planner that writes them and the collector, online executor and checks that read them.
 */

/**
 * One line of a shard's row sidecar: the row's id, key, location and stage input; in a later
 * stage also its source row and lineage; with the cache on, its cache key, and `c` when its
 * answer came from the cache (it has no line in the shard file).
 */
export interface RowLine {
  readonly id: string
  readonly key: string
  readonly loc: string
  readonly input: unknown
  readonly src?: unknown
  readonly lin?: ReadonlyArray<string>
  readonly ck?: string
  readonly c?: 1
}

/** How a sidecar line built as text ends when its row was answered from the cache (`c`, written last). */
export const cachedEnding = `,"c":1}`

/** Whether a sidecar line (as the planner writes it) is of a row answered from the cache: its answer is in the cached file, not a request in the shard file. */
export const isCachedRowLine = (text: string): boolean => text.endsWith(cachedEnding)

/** A later-stage row as its inbox holds it. */
export interface InboxLine {
  readonly key: string
  readonly loc: string
  readonly input: unknown
  readonly src: unknown
  readonly lin: ReadonlyArray<string>
}
