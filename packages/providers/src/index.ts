export * from "./BatchProvider.js"
export * from "./ProviderError.js"
