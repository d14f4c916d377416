export * from "./BatchProvider.js"
export * as OpenAiBatch from "./openai/OpenAiBatch.js"
export * from "./ProviderError.js"
export * as Registry from "./Registry.js"
