/**
 * Text that clients send and others read: the one rule for U+0000 in any input, and the one cleaning of display text
 * (agent and listing names and descriptions, key names, review comments).
 */
import { ApiError } from '@crochet/protocol';

/**
 * Where a U+0000 is in a parsed request part (strings and object keys, at any depth): a dotted path such as
 * `body.input_schema.a`, or null. PostgreSQL text and jsonb cannot hold the character, so an input carrying it would
 * fail in the database as a 500; no field of this API has a use for it. Iterative, so a deeply nested body cannot
 * exhaust the stack.
 */
export const nulPath = (value: unknown, root: string): string | null => {
  const pending: [unknown, string][] = [[value, root]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, path] = next;
    if (typeof item === 'string') {
      if (item.includes('\0')) return path;
    } else if (item !== null && typeof item === 'object') {
      for (const [key, child] of Object.entries(item)) {
        const at = `${path}.${key.replaceAll('\0', '\\u0000')}`;
        if (key.includes('\0')) return at;
        pending.push([child, at]);
      }
    }
  }
  return null;
};

/** Refuses a request with U+0000 in its path parameters, query string or body: 400 VALIDATION_FAILED naming the field. */
export const refuseNul = (request: { params: unknown; query: unknown; body: unknown }): void => {
  const field =
    nulPath(request.params, 'params') ?? nulPath(request.query, 'querystring') ?? nulPath(request.body, 'body');
  if (field === null) return;
  throw new ApiError('VALIDATION_FAILED', {
    message: `${field} contains the NUL character (\\u0000), which no field accepts`,
    details: { field },
  });
};

// Control characters (Cc) but the line feed, UTF-16 halves without their other half (Cs: PostgreSQL cannot store
// them), and the bidirectional marks, embeddings, overrides and isolates that make text read differently from how it
// is stored (Trojan Source, CVE-2021-42574).
const UNWANTED = /(?!\n)[\p{Cc}\p{Cs}\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu;
const LINE_BREAK = /\r\n?|[\u2028\u2029]/g;

/**
 * Display text as stored and served: without control and bidirectional formatting characters, tabs as spaces,
 * trimmed. `multiline` keeps line breaks (normalized to \n); otherwise (names) each becomes a space. Never HTML: it
 * is returned as a JSON string, and whatever renders it escapes it.
 */
export const cleanText = (raw: string, options: { multiline: boolean }): string => {
  const text = raw.replace(LINE_BREAK, '\n').replace(/\t/g, ' ');
  return (options.multiline ? text : text.replace(/\n/g, ' ')).replace(UNWANTED, '').trim();
};

/** Display text a field requires (`cleanText`); one left with nothing visible is refused (400 naming the field). */
export const cleanRequiredText = (raw: string, field: string, options: { multiline: boolean }): string => {
  const text = cleanText(raw, options);
  if (text === '') {
    throw new ApiError('VALIDATION_FAILED', { message: `${field} has no visible characters`, details: { field } });
  }
  return text;
};
