import { x402ProofId } from '@crochet/protocol';
import { decodePaymentSignatureHeader } from '@x402/core/http';

/**
 * The payment proofs a buyer can send with a retried call (DESIGN §3.4), parsed without I/O. Each proof has an id
 * that is unique across all rails; a proof pays for one gateway request, ever (see `PAYMENT_USED` keys in admission).
 */
export type Proof =
  | { kind: 'x402'; version: 1 | 2; header: string }
  | { kind: 'relay'; requestId: `0x${string}`; id: string }
  | { kind: 'tx'; network: string; tx: string; id: string };

export type ProofParse = { ok: true; proof: Proof | null } | { ok: false; message: string };

const RELAY_ID = /^0x[0-9a-fA-F]{64}$/;
const EVM_TX = /^0x[0-9a-fA-F]{64}$/;
const SOLANA_SIG = /^[1-9A-HJ-NP-Za-km-z]{64,88}$/;

/** The id a proof is first looked up and consumed under; null when an x402 header does not decode. */
export const proofKeyId = (proof: Proof): string | null => {
  if (proof.kind !== 'x402') return proof.id;
  try {
    return x402ProofId(decodePaymentSignatureHeader(proof.header));
  } catch {
    return null;
  }
};

/** The id under which a transaction is consumed: the same transaction reached through any rail is one proof. */
export const txProofId = (network: string, tx: string): string =>
  `tx:${network}:${network.startsWith('eip155:') ? tx.toLowerCase() : tx}`;

const one = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

/** True when a request carries any payment header (cheap: no parsing). */
export const hasPaymentProof = (headers: Record<string, string | string[] | undefined>): boolean =>
  headers['payment-signature'] !== undefined ||
  headers['x-payment'] !== undefined ||
  headers['x-crochet-relay-request-id'] !== undefined ||
  headers['x-crochet-payment-tx'] !== undefined;

/** Reads the payment headers of a request; null when it carries none. Two kinds at once is refused. */
export const parseProof = (headers: Record<string, string | string[] | undefined>): ProofParse => {
  const found: Proof[] = [];
  const signature = one(headers['payment-signature']);
  const xPayment = one(headers['x-payment']);
  if (signature) found.push({ kind: 'x402', version: 2, header: signature });
  else if (xPayment) found.push({ kind: 'x402', version: 1, header: xPayment });
  const relay = one(headers['x-crochet-relay-request-id'])?.trim();
  if (relay !== undefined) {
    if (!RELAY_ID.test(relay))
      return { ok: false, message: 'X-Crochet-Relay-Request-Id must be 0x and 64 hex digits.' };
    found.push({ kind: 'relay', requestId: relay.toLowerCase() as `0x${string}`, id: `relay:${relay.toLowerCase()}` });
  }
  const tx = one(headers['x-crochet-payment-tx'])?.trim();
  if (tx !== undefined) {
    const cut = tx.lastIndexOf(':');
    const network = cut > 0 ? tx.slice(0, cut) : '';
    const id = cut > 0 ? tx.slice(cut + 1) : '';
    const valid =
      (network.startsWith('eip155:') && /^eip155:[0-9]+$/.test(network) && EVM_TX.test(id)) ||
      (network.startsWith('solana:') && /^solana:[1-9A-HJ-NP-Za-km-z]{1,64}$/.test(network) && SOLANA_SIG.test(id));
    if (!valid) {
      return {
        ok: false,
        message:
          'X-Crochet-Payment-Tx must be <caip2-network>:<tx>, e.g. solana:<network id>:<signature> or eip155:8453:0x<hash>.',
      };
    }
    found.push({ kind: 'tx', network, tx: id, id: txProofId(network, id) });
  }
  if (found.length > 1) return { ok: false, message: 'Send one payment proof per call.' };
  return { ok: true, proof: found[0] ?? null };
};
