/**
 * What a call can fail with. `CrochetApiError` is the server's error envelope (DESIGN §3): branch on `code`, follow
 * `hint`. `CrochetClientError` is a decision the client made itself — never sent to the server — such as refusing
 * a price above `maxPrice` before paying anything.
 */

export interface ErrorBody {
  code: string;
  message: string;
  hint?: string;
  request_id?: string;
  docs?: string;
  [field: string]: unknown;
}

export class CrochetApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly hint: string | undefined;
  readonly body: ErrorBody;
  constructor(status: number, body: ErrorBody) {
    super(`${body.code}: ${body.message}`);
    this.name = 'CrochetApiError';
    this.status = status;
    this.code = body.code;
    this.hint = body.hint;
    this.body = body;
  }
}

export type ClientErrorCode =
  /** The listing's price is above the call's `maxPrice`; nothing was paid. */
  | 'MAX_PRICE_EXCEEDED'
  /** Paying would exceed the budget; nothing was paid. */
  | 'BUDGET_EXCEEDED'
  /** No configured wallet can pay any option of the 402. */
  | 'NO_PAYMENT_RAIL'
  /** Relay would not quote the payment (no route, bad input, key refused); nothing was paid. */
  | 'RELAY_QUOTE_FAILED'
  /** The payment stayed pending past the call's deadline; retry later with the same proof (`error.proof`). */
  | 'PAYMENT_STILL_PENDING'
  /** The connection dropped after the call was paid; `error.gatewayRequest` says what happened to it. */
  | 'CALL_INTERRUPTED'
  /** The call was aborted through its signal; when it was paid, `error.proof` resumes it. */
  | 'ABORTED'
  /** A reply that is not what the API documents. */
  | 'UNEXPECTED_RESPONSE';

export class CrochetClientError extends Error {
  readonly code: ClientErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ClientErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(`${code}: ${message}`);
    this.name = 'CrochetClientError';
    this.code = code;
    this.details = details;
  }
}
