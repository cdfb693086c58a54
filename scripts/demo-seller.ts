/**
 * A small real seller, the compose stack's `demo-seller`: answers JSON on any path and method, and only to requests
 * the Crochet gateway signed (plugins/src/seller-verifier). Publish a listing with private_endpoint_url
 * `http://demo-seller:4000/echo` (compose) or `http://127.0.0.1:4000/echo`, then give it the listing's signing secret:
 *
 *   CROCHET_SIGNING_SECRETS       comma-separated secrets (`crs_…`), newest first; both during a rotation
 *   CROCHET_SIGNING_SECRETS_FILE  a file with more, one per line, read again whenever it changes (no restart)
 *   DEMO_SELLER_HOST, DEMO_SELLER_PORT   where it listens (127.0.0.1:4000)
 *
 * Without a secret every signed call answers 503 SIGNING_SECRET_NOT_CONFIGURED; `GET /healthz` is never verified.
 */
import { readFileSync, statSync } from 'node:fs';
import { crochetVerifier } from '@crochet/plugins';
import Fastify from 'fastify';

const fromEnv = (process.env['CROCHET_SIGNING_SECRETS'] ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const secretsFile = process.env['CROCHET_SIGNING_SECRETS_FILE'];

let fileSeen = '';
let fromFile: string[] = [];
/** The configured secrets; the file is read again only when its size or modification time changes. */
const secrets = (): string[] => {
  if (secretsFile) {
    let seen = 'absent';
    try {
      const stat = statSync(secretsFile);
      seen = `${stat.size}:${stat.mtimeMs}`;
    } catch {}
    if (seen !== fileSeen) {
      fileSeen = seen;
      fromFile =
        seen === 'absent'
          ? []
          : readFileSync(secretsFile, 'utf8')
              .split(/[\n,]/)
              .map((s) => s.trim())
              .filter((s) => s && !s.startsWith('#'));
    }
  }
  return [...fromEnv, ...fromFile];
};

const app = Fastify({ logger: { level: process.env['LOG_LEVEL'] ?? 'info' } });

app.get('/healthz', async () => ({ ok: true, signing_secrets: secrets().length }));

await app.register(async (signed) => {
  // Checked before the verifier, which treats an empty secret list as a programming error.
  signed.addHook('onRequest', async (_request, reply) => {
    if (secrets().length > 0) return;
    return reply.code(503).send({
      error: {
        code: 'SIGNING_SECRET_NOT_CONFIGURED',
        message: 'this seller has no signing secret yet',
        hint: "set CROCHET_SIGNING_SECRETS (or write CROCHET_SIGNING_SECRETS_FILE) to the listing's signing_secret",
      },
    });
  });
  await signed.register(crochetVerifier, { secrets });
  signed.all('/*', async (request) => {
    const body = request.body;
    return {
      ok: true,
      seller: 'crochet-demo-seller',
      method: request.method,
      path: request.url,
      request_id: request.crochet!.requestId,
      listing_id: request.crochet!.listingId,
      test: request.crochet!.test,
      ...(Buffer.isBuffer(body) ? { received_bytes: body.length } : { received: body ?? null }),
    };
  });
});

const url = await app.listen({
  host: process.env['DEMO_SELLER_HOST'] ?? '127.0.0.1',
  port: Number(process.env['DEMO_SELLER_PORT'] ?? 4000),
});
app.log.info({ url, signing_secrets: secrets().length }, 'demo seller listening');
if (secrets().length === 0) app.log.warn('no signing secret: signed calls answer 503 until one is configured');

for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
