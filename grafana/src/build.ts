import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DASHBOARDS, toGrafana } from './dashboards.js';

/** `npm run dashboards:build`: writes grafana/dashboards/<name>.json from grafana/src/dashboards.ts. */

export const dashboardFile = (name: string): string =>
  fileURLToPath(new URL(`../dashboards/${name}.json`, import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = DASHBOARDS.map((spec) => {
    const file = dashboardFile(spec.name);
    writeFileSync(file, `${JSON.stringify(toGrafana(spec), null, 2)}\n`);
    return file;
  });
  // The repository's formatter has the last word on layout, so `npm run lint` passes on what this writes.
  execFileSync('npx', ['biome', 'format', '--write', ...files], { stdio: 'inherit' });
}
