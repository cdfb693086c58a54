import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{protocol,plugins,control-plane,proxy,dev-chains,load-tests,scripts,grafana}/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Tools, PostgreSQL and Redis for the tests: the defaults when they answer, else embedded/local ones.
    globalSetup: ['scripts/test-setup.ts'],
  },
});
