import { expect } from 'vitest';
import { solveChallenge } from '../src/pow.js';
import type { TestPlane } from './helpers.js';

/** Shared by the listing test files: the error-envelope assertion and a solved listing challenge. */

type Response = Awaited<ReturnType<TestPlane['call']>>;

/** Asserts an error response: its status, its code, and the full envelope every error carries (§3). */
export const expectError = (res: Response, status: number, code: string): void => {
  expect({ status: res.status, code: res.body?.error?.code }, res.text).toEqual({ status, code });
  expect(res.body.error).toMatchObject({
    message: expect.any(String),
    hint: expect.any(String),
    request_id: expect.stringMatching(/^req_/),
    docs: `/docs/errors#${code}`,
  });
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(res.body.error.hint.length).toBeGreaterThan(0);
  expect(res.body.data).toBeUndefined();
};

/** An error body without its per-request id, to compare two errors for sameness. */
export const withoutRequestId = (body: any): any => {
  const { request_id: _ignored, ...error } = body.error;
  return { ...body, error };
};

/** Asks for a listing challenge with `apiKey` and solves it. */
export const solvedListingChallenge = async (
  plane: TestPlane,
  apiKey: string,
): Promise<{ challenge_id: string; nonce: string }> => {
  const res = await plane.call('POST', '/api/v1/listings/challenge', { key: apiKey });
  expect(res.status, res.text).toBe(201);
  return {
    challenge_id: res.body.data.challenge_id,
    nonce: solveChallenge(res.body.data.salt, res.body.data.difficulty),
  };
};

/** The body of POST /api/v1/listings with a fresh solved challenge and sensible defaults. */
export const listingBody = async (
  plane: TestPlane,
  apiKey: string,
  fields: Record<string, unknown> = {},
): Promise<Record<string, unknown>> => ({
  ...(await solvedListingChallenge(plane, apiKey)),
  name: 'Echo',
  description: 'Echoes its input',
  pricing_model: 'free',
  private_endpoint_url: 'https://93.184.216.34/echo',
  ...fields,
});
