/**
 * Load scenarios as data: load-tests/scenarios/<name>.json, described by load-tests/scenarios/schema.json.
 * The autocannon runner (load.ts) and the k6 script (k6/scenario.ts) read the same files.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SCENARIO_DIR = join(dirname(fileURLToPath(import.meta.url)), '../scenarios');

export { CALL_KINDS, type CallKind, EXPECTED_STATUS, type Scenario } from './scenario-shape.js';

import { CALL_KINDS, type CallKind, type Scenario } from './scenario-shape.js';

const TOP_KEYS = new Set([
  '$schema',
  'name',
  'description',
  'arrival_rate_per_second',
  'duration_seconds',
  'connections',
  'buyers',
  'mix',
  'thresholds',
]);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
const fraction = (v: unknown): v is number => typeof v === 'number' && v >= 0 && v <= 1;

/** The problems with a parsed scenario, empty when it matches schema.json. Kept in step with the schema by a test. */
export const scenarioProblems = (value: unknown): string[] => {
  const problems: string[] = [];
  if (!isObject(value)) return ['a scenario is a JSON object'];
  for (const key of Object.keys(value)) if (!TOP_KEYS.has(key)) problems.push(`unknown field ${key}`);
  if (typeof value['name'] !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(value['name']))
    problems.push('name: lower-case letters, digits and dashes');
  if (typeof value['description'] !== 'string' || value['description'] === '') problems.push('description: text');
  if (!positive(value['arrival_rate_per_second']) || (value['arrival_rate_per_second'] as number) > 100_000)
    problems.push('arrival_rate_per_second: a number in (0, 100000]');
  if (!positive(value['duration_seconds']) || (value['duration_seconds'] as number) > 86_400)
    problems.push('duration_seconds: a number in (0, 86400]');
  const connections = value['connections'];
  if (!Number.isInteger(connections) || (connections as number) < 1 || (connections as number) > 10_000)
    problems.push('connections: an integer in [1, 10000]');
  const buyers = value['buyers'];
  if (buyers !== undefined && (!Number.isInteger(buyers) || (buyers as number) < 1 || (buyers as number) > 100))
    problems.push('buyers: an integer in [1, 100]');
  const mix = value['mix'];
  if (!Array.isArray(mix) || mix.length === 0) problems.push('mix: a non-empty array');
  else
    mix.forEach((entry, i) => {
      if (!isObject(entry)) {
        problems.push(`mix[${i}]: an object`);
        return;
      }
      for (const key of Object.keys(entry))
        if (key !== 'kind' && key !== 'weight') problems.push(`mix[${i}]: unknown field ${key}`);
      if (!CALL_KINDS.includes(entry['kind'] as CallKind))
        problems.push(`mix[${i}].kind: one of ${CALL_KINDS.join(', ')}`);
      if (!positive(entry['weight'])) problems.push(`mix[${i}].weight: a positive number`);
    });
  const thresholds = value['thresholds'];
  if (!isObject(thresholds)) problems.push('thresholds: an object');
  else {
    for (const key of Object.keys(thresholds))
      if (!['p99_ms', 'error_rate_max', 'unexpected_rate_max'].includes(key))
        problems.push(`thresholds: unknown field ${key}`);
    if (!positive(thresholds['p99_ms'])) problems.push('thresholds.p99_ms: a positive number');
    if (!fraction(thresholds['error_rate_max'])) problems.push('thresholds.error_rate_max: a fraction in [0, 1]');
    if (thresholds['unexpected_rate_max'] !== undefined && !fraction(thresholds['unexpected_rate_max']))
      problems.push('thresholds.unexpected_rate_max: a fraction in [0, 1]');
  }
  return problems;
};

export const parseScenario = (text: string, source: string): Scenario => {
  const value: unknown = JSON.parse(text);
  const problems = scenarioProblems(value);
  if (problems.length) throw new Error(`${source}: ${problems.join('; ')}`);
  return value as Scenario;
};

/** A scenario by name (load-tests/scenarios/<name>.json) or by path to a JSON file. */
export const loadScenario = (nameOrPath: string): Scenario => {
  const file = nameOrPath.endsWith('.json') ? nameOrPath : join(SCENARIO_DIR, `${nameOrPath}.json`);
  return parseScenario(readFileSync(file, 'utf8'), file);
};

export const scenarioNames = (): string[] =>
  readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.json') && f !== 'schema.json')
    .map((f) => f.slice(0, -'.json'.length))
    .sort();

/** A picker of call kinds by weight; `random` in [0, 1). */
export const kindPicker = (mix: Scenario['mix']): ((random: number) => CallKind) => {
  const total = mix.reduce((sum, m) => sum + m.weight, 0);
  return (random) => {
    let at = random * total;
    for (const m of mix) {
      at -= m.weight;
      if (at < 0) return m.kind;
    }
    return mix[mix.length - 1]!.kind;
  };
};
