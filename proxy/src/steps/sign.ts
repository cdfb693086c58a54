import { hash } from 'node:crypto';
import type { HeaderReceiptClaims, ReceiptSigner } from '@crochet/plugins';
import { canonicalString, SIGNATURE_HEADERS, signatureHeader } from '@crochet/protocol';
import type { Call } from '../call.js';

/**
 * Signs the seller request (DESIGN §3.3: one `v1=` entry per secret valid now, over timestamp, request id, listing
 * id and the body's SHA-256) and, for a paid call, the header receipt over what is known before the seller answers
 * (§3.4).
 */
export const sign = (
  call: Call,
  receipts: { signer: ReceiptSigner; issuer: string } | undefined,
  now: number = Date.now(),
): null | Promise<null> => {
  const listing = call.listing!;
  const secrets: string[] = [];
  for (const s of listing.secrets) if (s.expiresAtMs === null || s.expiresAtMs > now) secrets.push(s.secret);
  const timestamp = Math.floor(now / 1000);
  const bodySha256 = hash('sha256', call.body!, 'hex');
  call.signed = {
    [SIGNATURE_HEADERS.requestId]: call.id,
    [SIGNATURE_HEADERS.listingId]: listing.id,
    [SIGNATURE_HEADERS.timestamp]: String(timestamp),
    [SIGNATURE_HEADERS.bodySha256]: bodySha256,
    [SIGNATURE_HEADERS.signature]: signatureHeader(
      secrets,
      canonicalString(timestamp, call.id, listing.id, bodySha256),
    ),
  };
  return call.paid && receipts ? signReceipt(call, receipts, bodySha256) : null;
};

/** The header receipt of a paid call (§3.4), over what is known before the seller answers. */
const signReceipt = async (
  call: Call,
  receipts: { signer: ReceiptSigner; issuer: string },
  bodySha256: string,
): Promise<null> => {
  const listing = call.listing!;
  const { payment, outcome } = call.paid!;
  const claims: HeaderReceiptClaims = {
    iss: receipts.issuer,
    sub: call.id,
    listing_id: listing.id,
    amount: payment.amountAtomic,
    asset: payment.asset,
    network: payment.network,
    payment_proof: {
      rail: payment.rail,
      payer: payment.payer,
      tx: outcome?.tx ?? payment.tx,
      proof_ids: payment.proofIds,
    },
    request_body_sha256: bodySha256,
  };
  call.receipt = {
    claims,
    header: await receipts.signer.signHeaderReceipt(claims),
    responseSha256: null,
    full: null,
  };
  return null;
};
