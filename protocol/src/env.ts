import { isIP } from 'node:net';

/**
 * Reading configuration from environment variables with one clear line per bad variable. Pure: it reads the record
 * it is given. Both planes describe their settings with it so that the messages look the same everywhere.
 */

/** Thrown by `EnvReader.done()` when any variable is bad; `problems` has one line per variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

export class EnvReader {
  readonly #env: Env;
  readonly #problems: string[] = [];

  constructor(env: Env) {
    this.#env = env;
  }

  #raw(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value === '' ? undefined : value;
  }

  /** Records a problem with a variable; `done()` reports it. */
  problem(name: string, message: string): void {
    this.#problems.push(`${name}: ${message}`);
  }

  string(name: string, fallback: string): string;
  string(name: string): string | undefined;
  string(name: string, fallback?: string): string | undefined {
    return this.#raw(name) ?? fallback;
  }

  required(name: string, meaning: string): string {
    const value = this.#raw(name);
    if (value === undefined) this.problem(name, `is required (${meaning})`);
    return value ?? '';
  }

  int(name: string, fallback: number, range: { min: number; max: number }): number {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    if (!/^-?[0-9]+$/.test(raw)) {
      this.problem(name, `must be a whole number, got ${JSON.stringify(raw)}`);
      return fallback;
    }
    const value = Number(raw);
    if (value < range.min || value > range.max) {
      this.problem(name, `must be between ${range.min} and ${range.max}, got ${value}`);
      return fallback;
    }
    return value;
  }

  /**
   * Comma-separated IP addresses and CIDRs (e.g. trusted proxies: `10.0.0.0/8,127.0.0.1`); empty when unset.
   */
  addresses(name: string): string[] {
    const parts = (this.string(name) ?? '')
      .split(',')
      .map((part) => part.trim())
      .filter(Boolean);
    const valid = (part: string) => {
      const [address = '', bits, ...rest] = part.split('/');
      const family = isIP(address);
      if (family === 0 || rest.length > 0) return false;
      return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
    };
    if (!parts.every(valid)) {
      this.problem(name, 'must be comma-separated IP addresses or CIDRs (e.g. 10.0.0.0/8,127.0.0.1)');
      return [];
    }
    return parts;
  }

  flag(name: string, fallback = false): boolean {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    if (raw === '1' || raw === 'true') return true;
    if (raw === '0' || raw === 'false') return false;
    this.problem(name, `must be 1 or 0, got ${JSON.stringify(raw)}`);
    return fallback;
  }

  url(name: string, fallback: string, protocols: readonly string[]): string;
  url(name: string, fallback: undefined, protocols: readonly string[]): string | undefined;
  url(name: string, fallback: string | undefined, protocols: readonly string[]): string | undefined {
    const raw = this.#raw(name);
    if (raw === undefined) return fallback;
    try {
      const url = new URL(raw);
      if (!protocols.includes(url.protocol)) {
        this.problem(name, `must be a ${protocols.join(' or ')} URL, got ${url.protocol}`);
        return fallback;
      }
      return raw;
    } catch {
      this.problem(name, 'must be an absolute URL');
      return fallback;
    }
  }

  /** Throws a ConfigError listing every problem seen, if any. */
  done(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }
}
