export { x402ProofId } from '@crochet/protocol';
export {
  type CallOptions,
  type CallResult,
  Crochet,
  type CrochetOptions,
  type GatewayRequest,
  type ProgressEvent,
  type ProgressPhase,
} from './client.js';
export { type ClientErrorCode, CrochetApiError, CrochetClientError, type ErrorBody } from './errors.js';
export { Budget, fromAtomic, toAtomic } from './money.js';
export { solveChallenge, solvesChallenge } from './pow.js';
export {
  type Accept,
  type PaymentBody,
  type PaymentProof,
  type Rail,
  type RailName,
  type RelayBody,
  type RelayOptions,
  railsFor,
  relayRail,
  solanaTransferRail,
  type Wallets,
  x402EvmRail,
  x402SvmRail,
} from './rails.js';
export { type ReceiptClaims, type ReceiptExpectations, type ReceiptVerdict, verifyReceiptWith } from './receipts.js';
