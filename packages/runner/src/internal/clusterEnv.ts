/** The environment variable `sluice worker` and `sluice run --cluster` read when no URL is given (apart from Cluster.ts, which the help need not load). */
export const databaseUrlVariable = "SLUICE_DATABASE_URL"
