/**
 * docker-compose.yml and the Dockerfile agree with the documented configuration (no Docker engine runs here).
 * The compose file is read with the `yaml` package; while it is not installed those checks are skipped (say so loudly)
 * and the Dockerfile / config checks still run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

/** The variables a plane's config refuses to start without: its `r.required('…'` calls. */
const requiredVariables = (path: string): string[] =>
  [...read(path).matchAll(/r\.required\(\s*'([A-Z0-9_]+)'/g)].map((m) => m[1]!);

const yamlModule = 'yaml';
const yaml: { parse(text: string, options?: Record<string, unknown>): any } | undefined = await import(yamlModule).then(
  (m) => m.default ?? m,
  () => undefined,
);
if (!yaml)
  process.stderr.write('compose.test.ts: the `yaml` package is not installed; docker-compose.yml checks skipped\n');

describe('plane configuration', () => {
  it('finds the required variables in both config modules', () => {
    expect(requiredVariables('control-plane/src/config.ts')).toContain('CROCHET_ENCRYPTION_KEY');
    expect(requiredVariables('proxy/src/config.ts')).toContain('CROCHET_DATA_PLANE_KEY');
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  it('has a CMD that runs an entry point that exists and is copied into the image', () => {
    const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(dockerfile);
    expect(cmd, 'a JSON-form CMD').not.toBeNull();
    const argv = JSON.parse(cmd![1]!) as string[];
    expect(argv[0]).toBe('node');
    const entry = argv.find((a) => a.endsWith('.ts') || a.endsWith('.js'));
    expect(entry).toBeDefined();
    expect(existsSync(join(root, entry!)), `${entry} exists`).toBe(true);
    const copied = [...dockerfile.matchAll(/^COPY\s+(?!--from)(\S+)\s+/gm)].map((m) => m[1]!);
    expect(copied.some((source) => entry!.startsWith(`${source}/`))).toBe(true);
  });
});

describe.skipIf(!yaml)('docker-compose.yml', () => {
  const compose = yaml?.parse(read('docker-compose.yml'), { merge: true }) ?? { services: {} };
  const services = compose.services as Record<string, any>;
  const env = (service: string): Record<string, string> => {
    const e = services[service]?.environment ?? {};
    return Array.isArray(e)
      ? Object.fromEntries(e.map((kv: string) => [kv.split('=')[0], kv.split('=').slice(1).join('=')]))
      : e;
  };
  const argvOf = (command: unknown): string[] =>
    Array.isArray(command) ? command.map(String) : String(command ?? '').split(/\s+/);

  it('has redis (AOF on), postgres, the control plane and two proxies', () => {
    for (const name of ['redis', 'postgres', 'control-plane', 'proxy-a', 'proxy-b'])
      expect(services).toHaveProperty(name);
    const redis = argvOf(services['redis'].command);
    expect(redis[redis.indexOf('--appendonly') + 1]).toBe('yes');
  });

  it('gives every service an image or a build and a health check', () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.image ?? service.build, `${name}: image or build`).toBeTruthy();
      expect(service.healthcheck?.test, `${name}: healthcheck`).toBeTruthy();
    }
  });

  it('publishes the proxies on 8080 and 8082 and points them at the control plane', () => {
    const planePort = env('control-plane')['CONTROL_PLANE_PORT'] ?? '8081';
    const published = (name: string) => argvOf(services[name].ports).map((p) => p.split(':').slice(-2).join(':'));
    expect(published('proxy-a')).toContain(`8080:${env('proxy-a')['PORT'] ?? '8080'}`);
    expect(published('proxy-b')).toContain(`8082:${env('proxy-b')['PORT'] ?? '8080'}`);
    for (const name of ['proxy-a', 'proxy-b'])
      expect(env(name)['CONTROL_PLANE_URL']).toBe(`http://control-plane:${planePort}`);
  });

  it('gives the planes every variable their config requires', () => {
    const shared = ['DATABASE_URL', 'REDIS_URL', 'CROCHET_ENCRYPTION_KEY', 'CROCHET_DATA_PLANE_KEY'];
    for (const name of shared) expect(env('control-plane'), `control-plane: ${name}`).toHaveProperty(name);
    for (const name of [...shared, ...requiredVariables('control-plane/src/config.ts')])
      expect(env('control-plane')[name], `control-plane: ${name}`).toBeTruthy();
    for (const proxy of ['proxy-a', 'proxy-b'])
      for (const name of ['REDIS_URL', 'CROCHET_DATA_PLANE_KEY', ...requiredVariables('proxy/src/config.ts')])
        expect(env(proxy)[name], `${proxy}: ${name}`).toBeTruthy();
  });

  it('runs entry points that exist', () => {
    for (const [name, service] of Object.entries(services)) {
      if (!service.build || !service.command) continue;
      const entry = argvOf(service.command).find((a) => a.endsWith('.ts') || a.endsWith('.js'));
      expect(entry && existsSync(join(root, entry)), `${name}: ${entry}`).toBeTruthy();
    }
  });
});
