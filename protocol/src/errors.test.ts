import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ApiError, ERROR_CODES, ERRORS, errorBody } from './errors.js';

const docs = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const documented = [...docs.matchAll(/^## ([A-Z0-9_]+)\n\nHTTP (\d{3})\./gm)].map((m) => ({
  code: m[1]!,
  status: Number(m[2]),
}));

describe('error registry', () => {
  it('documents every code with its status, in registry order, and nothing else', () => {
    expect(documented.map((d) => d.code)).toEqual(ERROR_CODES);
    for (const { code, status } of documented) {
      expect(ERRORS[code as keyof typeof ERRORS].status, code).toBe(status);
    }
  });

  it('has UPPER_SNAKE_CASE codes, error statuses, messages and hints', () => {
    for (const code of ERROR_CODES) {
      const spec = ERRORS[code];
      expect(code).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(spec.status).toBeGreaterThanOrEqual(400);
      expect(spec.status).toBeLessThan(600);
      expect(spec.message.length).toBeGreaterThan(10);
      expect(spec.hint.length).toBeGreaterThan(10);
    }
  });

  it('renders the envelope with the docs anchor and refinements', () => {
    const body = errorBody('PAYLOAD_TOO_LARGE', 'req_1', { message: 'over 10 bytes', details: { limit_bytes: 10 } });
    expect(body).toEqual({
      error: {
        code: 'PAYLOAD_TOO_LARGE',
        message: 'over 10 bytes',
        request_id: 'req_1',
        hint: ERRORS.PAYLOAD_TOO_LARGE.hint,
        docs: '/docs/errors#PAYLOAD_TOO_LARGE',
        limit_bytes: 10,
      },
    });
    const error = new ApiError('RATE_LIMITED', { headers: { 'retry-after': '3' } });
    expect(error.status).toBe(429);
    expect(error.headers).toEqual({ 'retry-after': '3' });
  });
});
