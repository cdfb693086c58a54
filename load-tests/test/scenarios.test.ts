import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isLoopback } from '../src/load.js';
import {
  CALL_KINDS,
  kindPicker,
  loadScenario,
  SCENARIO_DIR,
  scenarioNames,
  scenarioProblems,
} from '../src/scenario.js';

const schema = JSON.parse(readFileSync(join(SCENARIO_DIR, 'schema.json'), 'utf8'));
// ajv resolves through the control plane's dependency (it is not a declared dependency of load-tests).
const { Ajv } = (await import('ajv')) as any;
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

describe('load scenarios', () => {
  it('has smoke, steady and spike', () => {
    expect(scenarioNames()).toEqual(expect.arrayContaining(['smoke', 'spike', 'steady']));
  });

  for (const name of scenarioNames()) {
    it(`${name}.json validates against schema.json and the TypeScript reader`, () => {
      const raw = JSON.parse(readFileSync(join(SCENARIO_DIR, `${name}.json`), 'utf8'));
      expect(validate(raw), JSON.stringify(validate.errors)).toBe(true);
      expect(scenarioProblems(raw)).toEqual([]);
      const scenario = loadScenario(name);
      expect(scenario.name).toBe(name);
      // 'paid' calls are unpaid (402); the description has to say so.
      if (scenario.mix.some((m) => m.kind === 'paid')) expect(scenario.description).toMatch(/402/);
    });
  }

  it('the schema and the reader reject the same broken scenarios', () => {
    const good = loadScenario('smoke');
    const broken = [
      { ...good, arrival_rate_per_second: 0 },
      { ...good, connections: 1.5 },
      { ...good, mix: [] },
      { ...good, mix: [{ kind: 'paid_for_real', weight: 1 }] },
      { ...good, thresholds: { p99_ms: 100 } },
      { ...good, thresholds: { p99_ms: 100, error_rate_max: 2 } },
      { ...good, extra: true },
    ];
    for (const scenario of broken) {
      expect(validate(scenario)).toBe(false);
      expect(scenarioProblems(scenario).length).toBeGreaterThan(0);
    }
    expect(schema.properties.mix.items.properties.kind.enum).toEqual([...CALL_KINDS]);
  });

  it('picks kinds by weight', () => {
    const pick = kindPicker([
      { kind: 'free', weight: 3 },
      { kind: 'invalid', weight: 1 },
    ]);
    expect([0, 0.5, 0.74, 0.75, 0.99].map(pick)).toEqual(['free', 'free', 'free', 'invalid', 'invalid']);
  });

  it('allows only loopback targets by default', () => {
    for (const url of ['http://localhost:8080', 'http://127.0.0.1:8080', 'http://[::1]:8080'])
      expect(isLoopback(new URL(url))).toBe(true);
    for (const url of ['http://10.0.0.1:8080', 'https://api.example.com', 'http://localhost.example.com'])
      expect(isLoopback(new URL(url))).toBe(false);
  });
});
