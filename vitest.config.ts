import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{protocol,plugins,control-plane,proxy,client,dev-chains,load-tests,scripts,grafana}/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 30_000,
    // Set-ups start whole stacks (a fresh PostgreSQL, chains, proxies): 20-30 s alone, over 60 s at times beside the
    // other worker on a 2-core machine in a slow phase.
    hookTimeout: 120_000,
    pool: 'forks',
    // Test files share nothing through module state (each makes its own database, Redis prefix and servers), so a
    // worker keeps the modules it loaded instead of loading the whole server graph again for every file: that
    // loading was a third of the suite's time. Two workers, not cores − 1 (= 1 on a 2-core machine): most of a
    // test's time is spent waiting on servers and chains, not computing.
    isolate: false,
    maxWorkers: 2,
    // Tools, PostgreSQL and Redis for the tests: the defaults when they answer, else embedded/local ones.
    globalSetup: ['scripts/test-setup.ts'],
  },
});
