/**
 * The modes of what sluice creates in a run directory and the response cache (see
 * PrivateFiles.ts), apart so that the lock (LockFile.ts) and the status program's code cache
 * (codeCache.ts) load nothing but node:*.
 */
import { lstatSync } from "node:fs"

export const directoryMode = 0o700
export const fileMode = 0o600

/**
 * Whether `dir` is a directory (not a link) of this user that other users cannot write: one
 * in a shared place (the OS temp directory) may have been made by someone else, to plant files.
 */
export const isOwnDirectory = (dir: string): boolean => {
  try {
    const info = lstatSync(dir)
    const uid = process.getuid?.()
    return info.isDirectory() && (uid === undefined || info.uid === uid) && (info.mode & 0o002) === 0
  } catch {
    return false
  }
}
