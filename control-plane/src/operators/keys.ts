/**
 * The Redis keys of operator sign-in, beside the protocol's registry (protocol/src/redis-keys.ts) because only the
 * control plane reads them; they share the deployment's prefix.
 */
export const operatorRedisKeys = (prefix: string) =>
  Object.freeze({
    /** A live session: its id → operator id; deleting it logs the session out. */
    session: (sessionId: string) => `${prefix}op:sess:${sessionId}`,
    /** Failed sign-ins for one email (by its hash) from one client, in the current window. */
    loginEmailFromClient: (emailHash: string, client: string) => `${prefix}op:rl:login:ec:${emailHash}:${client}`,
    /** Failed sign-ins for one email (by its hash) from all clients, in the current window. */
    loginEmail: (emailHash: string) => `${prefix}op:rl:login:e:${emailHash}`,
    /** Failed sign-ins from one client address, in the current window. */
    loginAddress: (address: string) => `${prefix}op:rl:login:ip:${address}`,
    /** Sign-ups from one client address, in the current window. */
    signupAddress: (address: string) => `${prefix}op:rl:signup:ip:${address}`,
    /** Claim codes one agent asked for, in the current window. */
    claimIssue: (agentId: string) => `${prefix}op:rl:claim-issue:${agentId}`,
    /** Claim codes an operator entered that matched nothing, in the current window. */
    claimOperator: (operatorId: string) => `${prefix}op:rl:claim-redeem:${operatorId}`,
  });

export type OperatorRedisKeys = ReturnType<typeof operatorRedisKeys>;
