import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{protocol,plugins,control-plane,proxy,client,dev-chains,load-tests,scripts,grafana}/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
