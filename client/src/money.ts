/** USDC amounts: decimal strings at the edge, integer atomic units (6 decimals) inside. Never floats. */

import { fromAtomic as fromAtomicOf, toAtomic as toAtomicOf } from '@crochet/protocol';

/** Decimal USDC → atomic units; throws on anything but a decimal string with at most 6 decimals. */
export const toAtomic = (amount: string): bigint => {
  const atomic = toAtomicOf(amount.trim(), 'USDC');
  if (atomic === null) throw new TypeError(`"${amount}" is not a decimal USDC amount with at most 6 decimals`);
  return atomic;
};

export const fromAtomic = (atomic: bigint): string => fromAtomicOf(atomic, 'USDC');

/**
 * A spending limit shared by any number of calls: a call reserves the price before paying and is refused
 * (BUDGET_EXCEEDED, nothing paid) when the reservation does not fit.
 */
export class Budget {
  readonly limitAtomic: bigint;
  #spentAtomic = 0n;
  constructor(limit: string | bigint) {
    this.limitAtomic = typeof limit === 'bigint' ? limit : toAtomic(limit);
  }
  get spentAtomic(): bigint {
    return this.#spentAtomic;
  }
  get remainingAtomic(): bigint {
    return this.limitAtomic - this.#spentAtomic;
  }
  /** Takes `amountAtomic` from the budget; false (and nothing taken) when it does not fit. */
  reserve(amountAtomic: bigint): boolean {
    if (amountAtomic > this.remainingAtomic) return false;
    this.#spentAtomic += amountAtomic;
    return true;
  }
  /** Gives back a reservation whose payment was never made. */
  release(amountAtomic: bigint): void {
    this.#spentAtomic -= amountAtomic;
  }
}
