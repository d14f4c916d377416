/**
 * OpenAI-shaped API errors: `{ error: { message, type, param, code } }`.
 * Handlers throw ApiError; the router renders it.
 */
export interface ApiErrorBody {
  readonly message: string
  readonly type: string
  readonly param: string | null
  readonly code: string | null
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {}
  ) {
    super(message)
  }

  get body(): { readonly error: ApiErrorBody } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null): ApiError =>
  new ApiError(400, message, "invalid_request_error", param, code)

export const missingParameter = (param: string): ApiError =>
  invalidRequest(`Missing required parameter: '${param}'.`, param, "missing_required_parameter")

export const invalidValue = (param: string, message: string): ApiError =>
  invalidRequest(`Invalid value for '${param}': ${message}`, param, "invalid_value")

export const notFound = (message: string, param: string | null = null): ApiError =>
  new ApiError(404, message, "invalid_request_error", param, null)

export const conflict = (message: string): ApiError => new ApiError(409, message, "invalid_request_error", null, null)

export const serverErrorBody: ApiErrorBody = {
  message: "The server had an error while processing your request.",
  type: "server_error",
  param: null,
  code: "server_error"
}
