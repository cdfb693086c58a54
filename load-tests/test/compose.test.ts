/**
 * docker-compose.yml and the Dockerfile agree with the documented configuration (no Docker engine runs here): every
 * service's image or build, command, ports, environment, health check and mounted files, against the planes' config
 * modules, the bundles scripts/bundle.ts builds (built here for real), the mounted Prometheus and Grafana files, and
 * the ports the compose header and README.md document.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BIN_DIR, BUNDLES, bundle } from '../../scripts/bundle.js';

const root = join(import.meta.dirname, '../..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

/** The variables a plane's config refuses to start without: `r.required('…'` and `r.problem('…', 'is required`. */
const requiredVariables = (path: string): string[] => [
  ...[...read(path).matchAll(/r\.required\(\s*'([A-Z0-9_]+)'/g)].map((m) => m[1]!),
  ...[...read(path).matchAll(/r\.problem\(\s*'([A-Z0-9_]+)',\s*'is required/g)].map((m) => m[1]!),
];

/** The TypeScript sources under a path (a file or a folder), tests left out. */
const sources = (path: string): string[] => {
  const full = join(root, path);
  if (!statSync(full).isDirectory()) return [read(path)];
  return readdirSync(full, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.split('/').includes('test'))
    .map((f) => read(join(path, f)));
};

/** Each plane's entry (a bundle's source), the module that reads its config, and where its variables are read. */
const PLANES: Record<string, { config: string; reads: string[] }> = {
  'control-plane/src/main.ts': {
    config: 'control-plane/src/config.ts',
    reads: ['control-plane/src', 'plugins/src', 'protocol/src'],
  },
  'proxy/src/main.ts': { config: 'proxy/src/config.ts', reads: ['proxy/src', 'plugins/src', 'protocol/src'] },
  'scripts/demo-seller.ts': { config: 'scripts/demo-seller.ts', reads: ['scripts/demo-seller.ts'] },
};

describe('plane configuration', () => {
  it('finds the required variables in both config modules', () => {
    expect(requiredVariables('control-plane/src/config.ts')).toEqual(
      expect.arrayContaining(['DATABASE_URL', 'CROCHET_ENCRYPTION_KEY', 'CROCHET_DATA_PLANE_KEY']),
    );
    expect(requiredVariables('proxy/src/config.ts')).toContain('CROCHET_DATA_PLANE_KEY');
  });
});

describe('Dockerfile and the bundles', () => {
  const dockerfile = read('Dockerfile');
  const stages = dockerfile.split(/^(?=FROM\s)/m).filter((s) => s.startsWith('FROM'));
  const build = stages.find((s) => /^FROM\s+\S+\s+AS\s+build\b/im.test(s)) ?? '';
  const runtime = stages.at(-1) ?? '';
  const copied = (stage: string) =>
    [...stage.matchAll(/^COPY\s+(?!--from)(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
  const out = mkdtempSync(join(tmpdir(), 'crochet-bundle-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs a bundle by default, as a non-root user, on the Node major the repo requires', () => {
    const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(runtime);
    expect(cmd, 'a JSON-form CMD').not.toBeNull();
    const argv = JSON.parse(cmd![1]!) as string[];
    expect(argv[0]).toBe('node');
    expect(Object.keys(BUNDLES)).toContain(argv[1]);
    const user = /^USER\s+(\S+)/m.exec(runtime)?.[1];
    expect(user && !['root', '0'].includes(user), `runtime USER ${user}`).toBe(true);
    const node = Number(/^FROM\s+node:(\d+)/m.exec(runtime)?.[1]);
    const engines = Number(/(\d+)/.exec(JSON.parse(read('package.json')).engines.node)?.[1]);
    expect(node).toBeGreaterThanOrEqual(engines);
  });

  it('builds the bundles with scripts/bundle.ts from every source they need, and ships only its output', () => {
    expect(build).toMatch(/^RUN node --import tsx scripts\/bundle\.ts \/out$/m);
    expect(runtime).toMatch(/^COPY --from=build \/out \.\/$/m);
    const inBuild = copied(build);
    for (const workspace of JSON.parse(read('package.json')).workspaces as string[])
      expect(inBuild, `${workspace}/package.json before npm ci`).toContain(`${workspace}/package.json`);
    for (const source of [...Object.values(BUNDLES), 'scripts/bundle.ts', 'protocol/src', 'plugins/src'])
      expect(
        inBuild.some((c) => source === c || source.startsWith(`${c}/`)),
        `${source} copied into the build stage`,
      ).toBe(true);
    // .dockerignore must not hide what the build copies (patterns as Docker reads them: ** any folders, * one name).
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map((p) =>
        p
          .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
          .replace(/\*\*\//g, '\0')
          .replace(/\*/g, '[^/]*'),
      )
      .map((p) => new RegExp(`^${p.replace(/\0/g, '(.*/)?')}(/|$)`));
    for (const path of [...inBuild, ...Object.values(BUNDLES), 'control-plane/migrations/001_x.sql'])
      expect(
        ignored.find((p) => p.test(path)),
        `${path} not in .dockerignore`,
      ).toBeUndefined();
    expect(ignored.some((p) => p.test('node_modules')) && ignored.some((p) => p.test('.git'))).toBe(true);
  });

  it('bundles every entry, with every file the bundles open at run time beside them', async () => {
    const sizes = await bundle(out);
    for (const [entry, source] of Object.entries(BUNDLES)) {
      expect(existsSync(join(root, source)), `${source} exists`).toBe(true);
      expect(sizes[entry], `${entry} built`).toBeGreaterThan(0);
    }
    expect(readdirSync(join(out, 'dist/migrations')).sort()).toEqual(
      readdirSync(join(root, 'control-plane/migrations'))
        .filter((f) => f.endsWith('.sql'))
        .sort(),
    );
    expect(readdirSync(out).sort()).toEqual(['dist', 'node_modules', 'package.json']);
  }, 120_000);
});

describe('docker-compose.yml', () => {
  const text = read('docker-compose.yml');
  const compose = parse(text, { merge: true });
  const services = compose.services as Record<string, any>;
  /** A value as compose would read it with no .env: `${NAME:-default}` → default. */
  const interpolate = (value: unknown): string =>
    String(value ?? '').replace(/\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}/g, (_, _name, fallback) => fallback ?? '');
  const env = (service: string): Record<string, string> => {
    const e = services[service]?.environment ?? {};
    const pairs: [string, unknown][] = Array.isArray(e)
      ? e.map((kv: string) => [kv.split('=')[0]!, kv.split('=').slice(1).join('=')])
      : Object.entries(e);
    return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v)]));
  };
  const argvOf = (command: unknown): string[] =>
    Array.isArray(command) ? command.map(String) : String(command ?? '').split(/\s+/);
  /** The bundle's source a service runs, when it runs one of ours. */
  const sourceOf = (name: string): string | undefined => {
    const entry = argvOf(services[name]?.command).find((a) => a in BUNDLES);
    return entry ? BUNDLES[entry] : undefined;
  };
  /** The port each service listens on inside the network: our processes from their env, the images' defaults. */
  const listensOn = (name: string): string | undefined =>
    ({
      'control-plane/src/main.ts': env(name)['CONTROL_PLANE_PORT'] ?? '8081',
      'proxy/src/main.ts': env(name)['PORT'] ?? '8080',
      'scripts/demo-seller.ts': env(name)['DEMO_SELLER_PORT'] ?? '4000',
    })[sourceOf(name) ?? ''] ?? { redis: '6379', postgres: '5432', prometheus: '9090', grafana: '3000' }[name];
  /**
   * The ports each of our planes serves /metrics on: a listener of its own, apart from the API port; a proxy
   * container with CROCHET_PROXY_WORKERS processes has one per worker (CROCHET_METRICS_PORT + i).
   */
  const metricsOn = (name: string): string[] => {
    if (sourceOf(name) === 'control-plane/src/main.ts') return [env(name)['CONTROL_PLANE_METRICS_PORT'] ?? '9465'];
    if (sourceOf(name) !== 'proxy/src/main.ts') return [];
    const base = Number(env(name)['CROCHET_METRICS_PORT'] ?? '9464');
    const workers = Number(env(name)['CROCHET_PROXY_WORKERS'] ?? '1');
    return Array.from({ length: workers }, (_, i) => String(base + i));
  };
  /** Every `ports:` entry: host port, container port, service. */
  const portMappings = Object.entries(services).flatMap(([name, service]) =>
    ((service.ports ?? []) as string[]).map((port) => {
      const [host, container] = String(port).split(':').slice(-2);
      return { host: host!, container: container!, name };
    }),
  );
  /** Host port → service. */
  const published = new Map(portMappings.map((p) => [p.host, p.name]));
  const mounts = (name: string): { host: string; container: string }[] =>
    ((services[name]?.volumes ?? []) as string[])
      .filter((v) => String(v).startsWith('./'))
      .map((v) => {
        const [host, container] = String(v).split(':');
        return { host: posix.normalize(host!), container: container! };
      });
  /** The repo path a container path of a service is mounted from, if it is. */
  const hostPathOf = (name: string, path: string): string | undefined => {
    const mount = mounts(name).find((m) => path === m.container || path.startsWith(`${m.container}/`));
    return mount ? join(mount.host, path.slice(mount.container.length)) : undefined;
  };
  /** Every `service:port` written in a text names a service listening on that port (its API or its metrics). */
  const expectServicePortsAgree = (what: string, doc: string) => {
    for (const [, name, port] of doc.matchAll(/\b([a-z][a-z0-9-]*):(\d{2,5})\b/g))
      if (name! in services)
        expect([listensOn(name!), ...metricsOn(name!)], `${what} says ${name}:${port}`).toContain(port);
  };

  it('has redis (AOF on), postgres, the control plane, two proxies, the demo seller, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['control-plane', 'demo-seller', 'grafana', 'postgres', 'prometheus', 'proxy-a', 'proxy-b', 'redis'].sort(),
    );
    const redis = argvOf(services['redis'].command);
    expect(redis[redis.indexOf('--appendonly') + 1]).toBe('yes');
    expect(services['prometheus'].image).toMatch(/^prom\/prometheus(:|$)/);
    expect(services['grafana'].image).toMatch(/^grafana\/grafana(:|$)/);
  });

  it('runs our bundles from one image and the right bundle in each service', () => {
    const expected: Record<string, string> = {
      'control-plane': 'control-plane/src/main.ts',
      'proxy-a': 'proxy/src/main.ts',
      'proxy-b': 'proxy/src/main.ts',
      'demo-seller': 'scripts/demo-seller.ts',
    };
    for (const [name, source] of Object.entries(expected)) {
      expect(services[name].build, `${name}: built from the Dockerfile`).toBe('.');
      expect(services[name].image, `${name}: the one image`).toBe(services['control-plane'].image);
      expect(argvOf(services[name].command)[0]).toBe('node');
      expect(sourceOf(name), `${name}: ${argvOf(services[name].command).join(' ')}`).toBe(source);
    }
    for (const [name, service] of Object.entries(services))
      if (!(name in expected)) expect(service.build, `${name}: a published image`).toBeUndefined();
    expect(Object.keys(BUNDLES).every((entry) => entry.startsWith(`${BIN_DIR}/`))).toBe(true);
  });

  it('gives every service an image and a health check on the port and path it serves', () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.image, `${name}: image`).toBeTruthy();
      const test = argvOf(service.healthcheck?.test).join(' ');
      expect(test, `${name}: healthcheck`).toBeTruthy();
      const url = /http:\/\/(?:127\.0\.0\.1|localhost):(\d+)(\/[^'"\s)]*)/.exec(test);
      if (!url) continue; // redis-cli ping, pg_isready
      expect(url[1], `${name}: health check port`).toBe(listensOn(name));
      const source = sourceOf(name);
      if (source) {
        const served = PLANES[source]!.reads[0]!;
        expect(
          sources(served).some((code) => code.includes(`'${url[2]}'`)),
          `${served} serves ${url[2]}`,
        ).toBe(true);
      }
    }
    expect(argvOf(services['grafana'].healthcheck.test).join(' ')).toContain('/api/health');
  });

  it('starts each service after what it needs is healthy', () => {
    const needs: Record<string, string[]> = {
      'control-plane': ['postgres', 'redis'],
      'proxy-a': ['control-plane', 'redis'],
      'proxy-b': ['control-plane', 'redis'],
      prometheus: ['control-plane', 'proxy-a', 'proxy-b'],
      grafana: ['prometheus'],
    };
    for (const [name, service] of Object.entries(services)) {
      for (const [other, dependency] of Object.entries((service.depends_on ?? {}) as Record<string, any>)) {
        expect(services, `${name} depends on ${other}`).toHaveProperty(other);
        expect(['service_healthy', 'service_started', 'service_completed_successfully']).toContain(
          dependency?.condition,
        );
      }
      for (const other of needs[name] ?? [])
        expect(service.depends_on?.[other]?.condition, `${name} waits for ${other}`).toBe('service_healthy');
    }
  });

  it('gives each process every variable its config requires, and only variables it reads', () => {
    for (const [name] of Object.entries(services)) {
      const source = sourceOf(name);
      if (!source) continue;
      const plane = PLANES[source]!;
      for (const variable of requiredVariables(plane.config))
        expect(env(name)[variable], `${name}: ${variable}`).toBeTruthy();
      const code = plane.reads.flatMap(sources).join('\n');
      for (const variable of Object.keys(env(name)))
        expect(code.includes(`'${variable}'`), `${name}: ${variable} is read by ${plane.reads.join(', ')}`).toBe(true);
    }
    for (const proxy of ['proxy-a', 'proxy-b']) {
      expect(env(proxy)['CONTROL_PLANE_URL']).toBe(`http://control-plane:${listensOn('control-plane')}`);
      expect(env(proxy)['CROCHET_DATA_PLANE_KEY']).toBe(env('control-plane')['CROCHET_DATA_PLANE_KEY']);
      expect(env(proxy)['REDIS_URL']).toBe(env('control-plane')['REDIS_URL']);
      expect(env(proxy), `${proxy} holds no database or at-rest key`).not.toHaveProperty('CROCHET_ENCRYPTION_KEY');
    }
    expect(env('control-plane')['CONTROL_PLANE_HOST']).toBe('0.0.0.0');
    expect(env('demo-seller')['DEMO_SELLER_HOST']).toBe('0.0.0.0');
    expect(new URL(env('proxy-a')['PUBLIC_BASE_URL']!).port).toBe([...published].find(([, s]) => s === 'proxy-a')?.[0]);
    expect(new URL(env('control-plane')['DATABASE_URL']!).host).toBe(`postgres:${listensOn('postgres')}`);
    expect(new URL(env('control-plane')['REDIS_URL']!).host).toBe(`redis:${listensOn('redis')}`);
    // The demo seller lives on the compose network: private address, plain http.
    for (const plane of ['control-plane', 'proxy-a', 'proxy-b'])
      expect(env(plane)['CROCHET_ALLOW_PRIVATE_ENDPOINTS'], plane).toBe('1');
  });

  it('mounts Prometheus and Grafana files that exist in the repo, and they name the compose services', () => {
    expect(mounts('prometheus')).toContainEqual({ host: 'grafana/prometheus', container: '/etc/prometheus' });
    expect(mounts('grafana')).toEqual(
      expect.arrayContaining([
        { host: 'grafana/provisioning', container: '/etc/grafana/provisioning' },
        { host: 'grafana/dashboards', container: '/var/lib/grafana/dashboards' },
      ]),
    );
    for (const name of Object.keys(services))
      for (const { host } of mounts(name)) expect(existsSync(join(root, host)), `${name}: ./${host}`).toBe(true);

    const configFile = argvOf(services['prometheus'].command)
      .find((a) => a.startsWith('--config.file='))
      ?.slice('--config.file='.length);
    expect(configFile).toBe('/etc/prometheus/prometheus.yml');
    const prometheusYml = hostPathOf('prometheus', configFile!)!;
    expect(existsSync(join(root, prometheusYml)), prometheusYml).toBe(true);
    const prometheus = parse(read(prometheusYml));
    const targets = (prometheus.scrape_configs ?? []).flatMap((job: any) =>
      (job.static_configs ?? []).flatMap((c: any) => c.targets ?? []),
    ) as string[];
    // Prometheus scrapes each plane's metrics listener, which listens beyond loopback here and is published nowhere.
    for (const scraped of ['control-plane', 'proxy-a', 'proxy-b']) {
      expect(metricsOn(scraped).length, `${scraped}: a metrics listener`).toBeGreaterThan(0);
      for (const port of metricsOn(scraped)) {
        expect(targets, `Prometheus scrapes ${scraped}:${port}`).toContain(`${scraped}:${port}`);
        expect(port, `${scraped}: metrics apart from the API`).not.toBe(listensOn(scraped));
        expect(portMappings.filter((p) => p.name === scraped).map((p) => p.container)).not.toContain(port);
      }
      const host = scraped === 'control-plane' ? 'CONTROL_PLANE_METRICS_HOST' : 'CROCHET_METRICS_HOST';
      expect(env(scraped)[host], `${scraped}: ${host}`).toBe('0.0.0.0');
    }
    expectServicePortsAgree(prometheusYml, targets.join(' '));
    for (const rules of (prometheus.rule_files ?? []) as string[]) {
      const host = hostPathOf('prometheus', posix.resolve('/etc/prometheus', rules));
      expect(host && existsSync(join(root, host)), `rule file ${rules}`).toBeTruthy();
    }

    const yamlIn = (dir: string) =>
      existsSync(join(root, dir))
        ? readdirSync(join(root, dir))
            .filter((f) => /\.ya?ml$/.test(f))
            .map((f) => parse(read(join(dir, f))))
        : [];
    const datasources = yamlIn('grafana/provisioning/datasources').flatMap((f) => f?.datasources ?? []);
    const prometheusSource = datasources.find((d: any) => d.type === 'prometheus');
    expect(prometheusSource?.url, 'a Prometheus datasource').toBe(`http://prometheus:${listensOn('prometheus')}`);
    const providers = yamlIn('grafana/provisioning/dashboards').flatMap((f) => f?.providers ?? []);
    expect(providers.length, 'a dashboard provider').toBeGreaterThan(0);
    for (const provider of providers) {
      const host = hostPathOf('grafana', provider.options?.path ?? '');
      expect(host && existsSync(join(root, host)), `dashboards at ${provider.options?.path}`).toBeTruthy();
    }
  });

  it('publishes each service on the port it listens on', () => {
    for (const { host, container, name } of portMappings)
      expect(container, `${name}: ${host}:${container}`).toBe(listensOn(name));
    expect(published.size, 'no host port published twice').toBe(portMappings.length);
  });

  it('publishes exactly the ports its header documents', () => {
    const header = text.slice(0, text.search(/^[^#\n]/m));
    const documented = new Map(
      [...header.matchAll(/^#\s+(\d{2,5})\s+([a-z][a-z0-9-]*)\s/gm)].map((m) => [m[1]!, m[2]!] as const),
    );
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(published));
    expect(Object.fromEntries(published)).toMatchObject({ '8080': 'proxy-a', '8082': 'proxy-b' });
    expectServicePortsAgree('the compose header', header);
  });

  it('matches the ports README.md documents', () => {
    const readme = read('README.md');
    const start = readme.indexOf('- `docker compose up`');
    expect(start, 'README.md has the docker compose bullet').toBeGreaterThan(-1);
    const rest = readme.slice(start + 2);
    const bullet = readme.slice(start, start + 2 + rest.search(/\n(- |\n|#)/));
    expectServicePortsAgree('README.md', bullet);
    const bare = [...bullet.replace(/\b[a-z][a-z0-9-]*:\d+/g, '').matchAll(/\b(\d{4,5})\b/g)].map((m) => m[1]!);
    expect(bare.sort()).toEqual([...published.keys()].sort());
  });
});
