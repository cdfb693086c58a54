/** The success envelope of a single resource. */
export interface DataEnvelope<T> {
  data: T;
}

/** The success envelope of a list; `next_cursor` is null on the last page. */
export interface ListEnvelope<T> {
  data: T[];
  next_cursor: string | null;
}

/** Default and maximum page sizes of every list route. */
export const PAGE_LIMIT_DEFAULT = 20;
export const PAGE_LIMIT_MAX = 100;

/** Encodes a keyset position as an opaque cursor. */
export const encodeCursor = (position: readonly (string | number)[]): string =>
  Buffer.from(JSON.stringify(position), 'utf8').toString('base64url');

/** Decodes a cursor made by `encodeCursor`; null when it is not one. */
export const decodeCursor = (cursor: string): (string | number)[] | null => {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' || typeof v === 'number')) return null;
    return value;
  } catch {
    return null;
  }
};
