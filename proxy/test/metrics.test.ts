import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_PLANE_METRIC_LABELS } from '../../control-plane/src/metrics.js';
import { PROXY_METRIC_LABELS } from '../src/metrics.js';
import { eventually, gatewayCall, startSeller, startTestStack, type TestSeller, type TestStack } from './stack.js';

let stack: TestStack;
let seller: TestSeller;
beforeAll(async () => {
  stack = await startTestStack();
  seller = await startSeller();
});
afterAll(async () => {
  await seller.close();
  await stack.stop();
});

const scrape = async (base: string): Promise<{ status: number; type: string | null; text: string }> => {
  const res = await fetch(`${base}/metrics`);
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
};

/** The sample line of `name` whose labels include all of `labels`, or undefined. */
const sample = (text: string, name: string, labels: Record<string, string>): number | undefined => {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
};

describe('metrics', () => {
  it('the proxy serves its own /metrics on its metrics listener: requests by outcome, steps and the config version', async () => {
    const sellerKey = (await stack.plane.register('seller')).apiKey;
    const buyerKey = (await stack.plane.register('buyer')).apiKey;
    const { listing } = await stack.plane.createListing(sellerKey, { private_endpoint_url: `${seller.url}/echo` });
    const patched = await stack.plane.call('PATCH', `/api/v1/listings/${listing.id}`, {
      key: sellerKey,
      body: { rate_limit_per_minute: 1 },
    });
    expect(patched.status, patched.text).toBe(200);
    const proxy = stack.proxies[0]!;
    await eventually(() => expect(proxy.store.listing(listing.id)?.rateLimitPerMinute).toBe(1));

    expect((await gatewayCall(proxy, listing.id, buyerKey, { method: 'POST', body: { a: 1 } })).status).toBe(200);
    expect((await gatewayCall(proxy, listing.id, buyerKey, { method: 'PUT' })).status).toBe(429);
    expect((await gatewayCall(proxy, 'lst_doesnotexist', buyerKey)).status).toBe(404);

    const { status, type, text } = await scrape(proxy.metricsUrl);
    expect(status).toBe(200);
    expect(type).toContain('text/plain');
    // The proxy's registry, not the control plane's.
    expect(text).not.toContain('crochet_cp_http_requests_total');
    expect(
      sample(text, 'crochet_gateway_requests_total', {
        listing: listing.id,
        method: 'POST',
        status_class: '2xx',
        outcome: 'forwarded',
      }),
    ).toBe(1);
    expect(
      sample(text, 'crochet_gateway_requests_total', {
        listing: listing.id,
        method: 'PUT',
        status_class: '4xx',
        outcome: 'denied',
      }),
    ).toBe(1);
    // An unknown listing id never becomes a label value.
    expect(
      sample(text, 'crochet_gateway_requests_total', { listing: 'unknown', status_class: '4xx', outcome: 'denied' }),
    ).toBe(1);
    expect(text).not.toContain('lst_doesnotexist');
    expect(sample(text, 'crochet_gateway_errors_total', { code: 'RATE_LIMITED', status: '429' })).toBe(1);
    expect(sample(text, 'crochet_gateway_errors_total', { code: 'LISTING_NOT_FOUND', status: '404' })).toBe(1);
    for (const step of ['resolve', 'authenticate', 'admit', 'read_body', 'sign', 'upstream_headers']) {
      expect(sample(text, 'crochet_gateway_step_duration_seconds_count', { step }), step).toBeGreaterThanOrEqual(1);
    }
    expect(sample(text, 'crochet_gateway_upstream_duration_seconds_count', { listing: listing.id })).toBe(1);
    expect(sample(text, 'crochet_gateway_proxy_added_seconds_count', {})).toBe(3);
    expect(sample(text, 'crochet_gateway_bytes_total', { direction: 'in' })).toBe(7);
    expect(sample(text, 'crochet_gateway_bytes_total', { direction: 'out' })).toBeGreaterThan(0);
    expect(sample(text, 'crochet_redis_command_duration_seconds_count', { command: 'admit' })).toBe(2);
    expect(sample(text, 'crochet_config_version', {})).toBe(proxy.store.version);
    expect(sample(text, 'crochet_config_last_apply_timestamp_seconds', {})).toBeGreaterThan(0);
    expect(sample(text, 'crochet_config_age_seconds', {})).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'crochet_open_streams', {})).toBe(0);
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    expect(text).toContain('nodejs_heap_size_used_bytes');
    expect(text).toContain('# TYPE crochet_gateway_request_duration_seconds histogram');
  });

  it('the control plane serves HTTP RED by route template and the consumer gauges on its metrics listener', async () => {
    const { plane } = stack;
    await plane.eventsConsumer.drain();
    const { status, text } = await scrape(plane.metricsUrl);
    expect(status).toBe(200);
    expect(
      sample(text, 'crochet_cp_http_requests_total', {
        route: '/api/v1/listings/:id',
        method: 'PATCH',
        status_class: '2xx',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(text).not.toMatch(/route="\/api\/v1\/listings\/lst_/);
    expect(
      sample(text, 'crochet_cp_http_request_duration_seconds_count', { route: '/api/v1/listings/:id' }),
    ).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'crochet_events_consumer_lag', {})).toBe(0);
    expect(sample(text, 'crochet_events_consumer_pending', {})).toBe(0);
    expect(sample(text, 'crochet_events_dead_letters', {})).toBe(0);
    expect(sample(text, 'crochet_events_processed_total', {})).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'crochet_config_publishes_total', {})).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'crochet_db_pool_connections', {})).toBeGreaterThanOrEqual(1);
    expect(text).toContain('crochet_ledger_postings_total');
    expect(text).toContain('crochet_reconcile_mismatches_total');
    // Not an API route: absent from the documents.
    const openapi = await plane.call('GET', '/openapi.json');
    if (openapi.status === 200) expect(openapi.text).not.toContain('"/metrics"');
  });

  it('no metric has a label of unbounded cardinality', () => {
    const forbidden = /^(key|key_id|api_key|agent|agent_id|buyer|buyer_id|ip|client_ip|request_id|id)$/;
    for (const set of [PROXY_METRIC_LABELS, CONTROL_PLANE_METRIC_LABELS]) {
      for (const [name, labels] of Object.entries(set)) {
        expect(name).toMatch(/^crochet_[a-z_]+$/);
        for (const label of labels as readonly string[]) expect(label, `${name}{${label}}`).not.toMatch(forbidden);
      }
    }
  });
});
