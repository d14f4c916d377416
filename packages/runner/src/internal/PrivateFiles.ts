/**
 * A run directory and the response cache hold the user's data — source rows, prompts, answers —
 * so they are the user's alone: every directory sluice creates there is 0700 and every file
 * 0600. The mode is given when the file or directory is created; the umask can only take bits
 * away from it, so no umask makes them readable by anyone else. Every file and directory sluice
 * creates in a run directory, the response cache or the type-check cache is created here, or
 * with these modes (privateMode.ts: the lock file, written by node:fs alone).
 *
 * Sinks are not: they are the user's own files, created like any other file the user's
 * programs write (the umask decides).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import type { Scope } from "effect"
import { mkdirSync } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import { open as openPromise } from "node:fs/promises"
import { directoryMode, fileMode, isOwnDirectory } from "./privateMode.js"

export { directoryMode, fileMode, isOwnDirectory }

/** Creates `dir` and its missing parents, 0700. */
export const makeDirectory = (dir: string): Effect.Effect<void, PlatformError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeDirectory(dir, { recursive: true, mode: directoryMode }))

/** Opens `path` (see FileSystem's flags), creating it 0600 when it does not exist. */
export const open = (
  path: string,
  flag: FileSystem.OpenFlag
): Effect.Effect<FileSystem.File, PlatformError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.open(path, { flag, mode: fileMode }))

/** Creates `path` empty, 0600, unless it exists (a file another writer opens by name later). */
export const touch = (path: string): Effect.Effect<void, PlatformError, FileSystem.FileSystem> =>
  Effect.scoped(open(path, "a"))

/**
 * fsyncs a directory, so that a file created or renamed in it is still there after a power
 * cut (POSIX asks for it; fsync of the file covers its data, not its name). Skipped where a
 * directory cannot be synced: Windows, and file systems that answer EINVAL.
 */
export const syncDirectory = (dir: string): Effect.Effect<void, PlatformError, FileSystem.FileSystem> =>
  process.platform === "win32"
    ? Effect.void
    : Effect.scoped(
      Effect.flatMap(FileSystem.FileSystem, (fs) => fs.open(dir, { flag: "r" })).pipe(Effect.flatMap((d) => d.sync))
    ).pipe(
      Effect.catchIf(
        (e) => e._tag === "SystemError" && /^EINVAL\b/.test(e.description ?? ""),
        () => Effect.void
      )
    )

// Node's own API, for the modules that do not run on Effect's FileSystem.

/** Creates `dir` and its missing parents, 0700. */
export const makeDirectorySync = (dir: string): void => {
  mkdirSync(dir, { recursive: true, mode: directoryMode })
}

/** Creates `path`, 0600; fails if it exists. */
export const createNew = (path: string): Promise<FileHandle> => openPromise(path, "wx", fileMode)
