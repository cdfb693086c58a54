import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { EVENT_FIELD } from '@crochet/protocol';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { compareStreamIds, EventOutbox } from '../src/usage-events/index.js';

const REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const redis = new Redis(REDIS_URL);
const stream = `t:${randomBytes(6).toString('hex')}:events`;
const event = (i: number) => JSON.stringify({ i });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterAll(async () => {
  await redis.del(stream);
  redis.disconnect();
});

describe('the event outbox', () => {
  it('writes pushed events in batches and keeps each until the committed watermark passes it', async () => {
    const outbox = new EventOutbox({ redis, streamKey: stream, batchSize: 8 });
    for (let i = 0; i < 20; i++) outbox.pushJson(event(i));
    await outbox.flush();
    expect(outbox.unsent).toBe(0);
    expect(outbox.uncommitted).toBe(20);
    const written = await redis.xrange(stream, '-', '+');
    expect(written.map(([, fields]) => fields[1])).toEqual([...Array(20).keys()].map(event));
    outbox.committed(written[9]![0]);
    expect(outbox.uncommitted).toBe(10);
    outbox.committed(written[19]![0]);
    expect(outbox.uncommitted).toBe(0);
    await outbox.close();
  });

  it('appends again everything not yet committed when Redis lost its stream (a new epoch)', async () => {
    await redis.del(stream);
    const outbox = new EventOutbox({ redis, streamKey: stream });
    outbox.pushJson(event(1));
    await outbox.flush();
    // A start record an admission script appended itself.
    const scripted = await redis.xadd(stream, '*', EVENT_FIELD, event(2), 'p', '{"proof_ids":["x"]}');
    outbox.sent([EVENT_FIELD, event(2), 'p', '{"proof_ids":["x"]}'], scripted!);
    await redis.del(stream); // Redis restarted empty
    const rewound = await outbox.rewind();
    expect(rewound.map((f) => f[1])).toEqual([event(1), event(2)]);
    await outbox.flush();
    const again = await redis.xrange(stream, '-', '+');
    expect(again.map(([, fields]) => fields)).toEqual([
      [EVENT_FIELD, event(1)],
      [EVENT_FIELD, event(2), 'p', '{"proof_ids":["x"]}'],
    ]);
    await outbox.close();
  });

  it('counts a write in flight when rewinding: its events are neither missed nor appended twice', async () => {
    await redis.del(stream);
    const outbox = new EventOutbox({ redis, streamKey: stream });
    outbox.pushJson(event(1));
    await outbox.flush();
    outbox.pushJson(event(2));
    const inFlight = outbox.flush(); // written while the epoch changes
    await redis.del(stream);
    const rewound = await outbox.rewind();
    await inFlight;
    expect(rewound.map((f) => f[1])).toEqual([event(1), event(2)]);
    await outbox.flush();
    // Event 2's own write landed before the stream was lost: the rewind appends both again, once each.
    const entries = await redis.xrange(stream, '-', '+');
    expect(entries.map(([, fields]) => fields[1])).toEqual([event(1), event(2)]);
    await outbox.close();
  });

  it('keeps the entries Redis refuses, and writes them once it accepts them', async () => {
    const refusing = `${stream}:refusing`;
    await redis.set(refusing, 'not a stream'); // every XADD to it is refused (WRONGTYPE), the call itself answers
    const outbox = new EventOutbox({ redis, streamKey: refusing });
    for (let i = 0; i < 3; i++) outbox.pushJson(event(i));
    await outbox.flush();
    expect(outbox.failedWrites).toBe(1);
    expect(outbox.unsent).toBe(3);
    expect(outbox.uncommitted).toBe(0);
    await redis.del(refusing);
    await outbox.flush();
    expect(outbox.unsent).toBe(0);
    expect(outbox.appended).toBe(3);
    const written = await redis.xrange(refusing, '-', '+');
    expect(written.map(([, fields]) => fields)).toEqual([0, 1, 2].map((i) => [EVENT_FIELD, event(i)]));
    await outbox.close();
    await redis.del(refusing);
  });

  it('backs off while Redis is unreachable instead of writing on every push, and bounds what it keeps', async () => {
    // A port that answers nothing: listen, note it, close.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const down = new Redis(port, '127.0.0.1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
    });
    down.on('error', () => {});
    await down.connect().catch(() => {});
    const outbox = new EventOutbox({ redis: down, streamKey: stream, batchSize: 16, maxEvents: 1_000 });
    // 30 000 pushes over about 1.5 s (longer on a busy machine): a handful of attempts on the backoff timer (100,
    // 200, 400, 800 ms…), never one per push; the outbox keeps its 1 000 and counts every other one as dropped.
    for (let burst = 0; burst < 300; burst++) {
      for (let i = 0; i < 100; i++) outbox.pushJson(event(i));
      await sleep(5);
    }
    expect(outbox.failedWrites).toBeGreaterThan(0);
    expect(outbox.failedWrites).toBeLessThan(12);
    expect(outbox.unsent).toBe(1_000);
    expect(outbox.dropped).toBe(30_000 - 1_000);
    await outbox.close();
    down.disconnect();
  });
});

describe('stream ids', () => {
  it('compare as numbers, not text', () => {
    expect(compareStreamIds('9-1', '10-0')).toBe(-1);
    expect(compareStreamIds('10-2', '10-10')).toBe(-1);
    expect(compareStreamIds('10-10', '10-10')).toBe(0);
    expect(compareStreamIds('11-0', '10-18446744073709551615')).toBe(1);
  });
});
