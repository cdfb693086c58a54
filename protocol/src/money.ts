/**
 * Money is an integer count of an asset's atomic unit inside Crochet (bigint), and a decimal string at the API edge.
 * Floats never touch an amount.
 */

/** Assets Crochet prices in, with their decimals. */
export const ASSETS = Object.freeze({
  USDC: { decimals: 6 },
} as const);

export type Currency = keyof typeof ASSETS;

export const isCurrency = (value: string): value is Currency => Object.hasOwn(ASSETS, value);

/** The largest price a listing may carry, in atomic units (1 000 000 USDC). */
export const PRICE_ATOMIC_MAX = 1_000_000n * 10n ** 6n;

const DECIMAL = /^(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,18}))?$/;

/**
 * Parses a non-negative decimal string into atomic units. Returns null when the string is not a plain decimal
 * (no sign, exponent or spaces) or has more fractional digits than the asset has decimals.
 */
export const toAtomic = (amount: string, currency: Currency): bigint | null => {
  const match = DECIMAL.exec(amount);
  if (!match) return null;
  const { decimals } = ASSETS[currency];
  const whole = match[1]!;
  const fraction = match[2] ?? '';
  if (fraction.length > decimals) return null;
  return BigInt(whole) * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, '0') || '0');
};

/** Formats atomic units as the shortest decimal string (`10000n` USDC → `"0.01"`). */
export const fromAtomic = (atomic: bigint, currency: Currency): string => {
  const { decimals } = ASSETS[currency];
  const negative = atomic < 0n;
  const digits = (negative ? -atomic : atomic).toString().padStart(decimals + 1, '0');
  const whole = digits.slice(0, digits.length - decimals);
  const fraction = digits.slice(digits.length - decimals).replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
};
