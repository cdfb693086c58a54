import { createHash } from 'node:crypto';

/**
 * The id an x402 payment is consumed under (a proof pays one gateway request, ever) and that `?payment_proof=` finds
 * in the buyer's history: the payer and its EIP-3009 nonce on EVM, the SHA-256 of the signed transaction's message on
 * Solana. One rule for the gateway and for buyers (the SDK looks a payment up by it). Typed structurally, as the x402
 * payload carries it, so the contract needs no x402 package.
 */
export interface X402ProofPayload {
  accepted?: { network?: string } | undefined;
  payload: unknown;
}

export const x402ProofId = (payload: X402ProofPayload): string => {
  const inner = payload.payload as { authorization?: { from?: string; nonce?: string }; transaction?: string } | null;
  const network = payload.accepted?.network ?? 'unknown';
  if (inner?.authorization?.from && inner.authorization.nonce) {
    return `x402:${network}:${inner.authorization.from.toLowerCase()}:${inner.authorization.nonce.toLowerCase()}`;
  }
  // SVM: the signed transaction's message. Hashing the message bytes (not the JSON or the base64 text) means no
  // re-encoding or added field can make the same payment look like a new proof.
  const message = typeof inner?.transaction === 'string' ? solanaMessageBytes(inner.transaction) : null;
  if (!message) throw new Error('x402 payload carries neither an EIP-3009 authorization nor a transaction');
  return `x402:${network}:${createHash('sha256').update(message).digest('hex')}`;
};

/** The message of a base64 Solana wire transaction: what follows the compact-u16 count and the 64-byte signatures. */
const solanaMessageBytes = (base64: string): Buffer | null => {
  const bytes = Buffer.from(base64, 'base64');
  let count = 0;
  let offset = 0;
  for (let shift = 0; shift < 21; shift += 7) {
    const byte = bytes[offset++];
    if (byte === undefined) return null;
    count |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
  }
  const start = offset + count * 64;
  return count > 0 && start < bytes.length ? bytes.subarray(start) : null;
};
