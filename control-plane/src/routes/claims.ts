import { Type } from 'typebox';
import type { App, Deps } from '../app.js';
import { AttemptLimiter } from '../operators/attempt-limiter.js';
import { CLAIM_TTL_SECONDS, claimCodeKey, issueClaimCode } from '../operators/claims.js';
import { operatorRedisKeys } from '../operators/keys.js';
import { Data, Timestamp } from '../schemas.js';

// Each code is a row; an agent never needs more than a few an hour.
const ISSUES_PER_HOUR = 20;

/** §3.7: an agent asks for a claim code to give its human, who redeems it on the dashboard. */
export const claimRoutes = (app: App, { config, pool, redis }: Deps): void => {
  const keys = operatorRedisKeys(config.redisPrefix);
  const limiter = new AttemptLimiter(redis);
  const codeKey = claimCodeKey(config.encryptionKey);

  app.post(
    '/api/v1/me/claim',
    {
      schema: {
        operationId: 'createClaimCode',
        summary: 'Get a one-time claim code for your human operator to enter on the dashboard (/dashboard)',
        description:
          `The code (CLM-XXXX-XXXX) works once, for ${CLAIM_TTL_SECONDS / 60} minutes; a newer code replaces an ` +
          'older one. Once claimed, GET /api/v1/me shows operator_claim, and the operator can pause you ' +
          '(AGENT_PAUSED), cap your daily spend (SPEND_CAP_EXCEEDED), pause your listings and revoke your keys.',
        tags: ['accounts'],
        response: {
          201: Data(
            Type.Object({
              claim_code: Type.String({ description: 'give it to your operator; shown once' }),
              expires_at: Timestamp,
            }),
          ),
        },
      },
      config: { auth: 'api_key', errors: ['RATE_LIMITED'] },
    },
    async (request, reply) => {
      const { agentId } = request.agent!;
      await limiter.take(
        [{ key: keys.claimIssue(agentId), max: ISSUES_PER_HOUR, windowMs: 3600_000 }],
        'Too many claim codes.',
      );
      const { code, expiresAt } = await issueClaimCode(pool, codeKey, agentId);
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ data: { claim_code: code, expires_at: expiresAt } });
    },
  );
};
