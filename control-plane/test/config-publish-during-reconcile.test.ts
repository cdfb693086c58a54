import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RECONCILE_LOCK } from '../src/ledger/reconcile.js';
import { startTestControlPlane, type TestPlane } from './helpers.js';

/**
 * A reconciliation run holds its advisory lock for as long as it takes (chain RPC included). It used to share its
 * key with the config publisher's lock, so a key revocation published meanwhile waited for it, hit the statement
 * timeout, and reached the proxies only at the next periodic resync (minutes later).
 */
describe('a config publish while a reconciliation runs', () => {
  let plane: TestPlane;
  beforeAll(async () => {
    plane = await startTestControlPlane();
  });
  afterAll(() => plane?.stop());

  it('goes through without waiting for it', async () => {
    const reconciling = await plane.deps.pool.connect();
    try {
      await reconciling.query('SELECT pg_advisory_lock($1)', [RECONCILE_LOCK]);
      await expect(plane.deps.publisher.resync()).resolves.toEqual(expect.any(Number));
    } finally {
      await reconciling.query('SELECT pg_advisory_unlock($1)', [RECONCILE_LOCK]);
      reconciling.release();
    }
  });
});
