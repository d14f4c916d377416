/**
 * The modes of what sluice creates in a run directory and the response cache (see
 * PrivateFiles.ts), apart so that the lock (LockFile.ts) loads nothing but node:*.
 */
export const directoryMode = 0o700
export const fileMode = 0o600
