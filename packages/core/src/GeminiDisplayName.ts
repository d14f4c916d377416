/**
 * Gemini batches carry no metadata, only a `displayName`. sluice writes the run, shard and
 * submission there and reads them back, so that orphan adoption after a crash (which
 * matches `metadata.sluice_run|sluice_shard|sluice_submission`) works as with OpenAI.
 *
 * Format: `sluice.<run>.<shard>.s<submission>`. Dots separate the fields because run and
 * shard ids contain dashes (`classify-1a2b3c4d`, `label-00001`): a dash-separated name could
 * not be split back. A `.` or `%` inside a field is written `%2E` / `%25`. Other metadata
 * keys (e.g. `sluice_sha256`) are not kept.
 *
 * Shared by the Gemini provider and the emulator (which lists a batch's metadata in its ledger),
 * so it lives in core, which both import.
 */

const escapeField = (s: string): string => s.replace(/[%.]/g, (c) => (c === "%" ? "%25" : "%2E"))
const unescapeField = (s: string): string => s.replace(/%(25|2E)/gi, (_, hex: string) => (hex === "25" ? "%" : "."))

/** Display name of a batch created without sluice's run metadata. */
export const anonymousDisplayName = "sluice-batch"

/** `sluice.<run>.<shard>.s<submission>` from the metadata the runner passes to `create`. */
export const displayNameOf = (metadata: Readonly<Record<string, string>>): string => {
  const run = metadata["sluice_run"]
  const shard = metadata["sluice_shard"]
  const submission = metadata["sluice_submission"]
  if (run === undefined || shard === undefined || submission === undefined) return anonymousDisplayName
  return `sluice.${escapeField(run)}.${escapeField(shard)}.s${escapeField(submission)}`
}

/** The metadata encoded by `displayNameOf`, or `{}` for any other display name. */
export const metadataOfDisplayName = (displayName: string | null | undefined): Record<string, string> => {
  const parts = (displayName ?? "").split(".")
  if (parts.length !== 4 || parts[0] !== "sluice") return {}
  const [, run, shard, submission] = parts as [string, string, string, string]
  if (run === "" || shard === "" || !submission.startsWith("s")) return {}
  return {
    sluice_run: unescapeField(run),
    sluice_shard: unescapeField(shard),
    sluice_submission: unescapeField(submission.slice(1))
  }
}
