/**
 * Brings protocol/docs/errors.md in step with the registry: keeps every existing section (and any extra text in it),
 * adds a generated section for each new code, drops sections of removed codes, and orders them as the registry.
 * Run with `npm run docs:errors` after adding a code.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CODES, ERRORS } from '../src/errors.js';

const path = new URL('../docs/errors.md', import.meta.url);
const text = readFileSync(path, 'utf8');
const first = text.indexOf('\n## ');
const preamble = text.slice(0, first + 1);
const sections = new Map<string, string>();
for (const part of text.slice(first + 1).split(/^(?=## )/m)) {
  const code = /^## ([A-Z0-9_]+)/.exec(part)?.[1];
  if (code) sections.set(code, part.endsWith('\n\n') ? part : `${part.trimEnd()}\n\n`);
}
const body = ERROR_CODES.map((code) => {
  const spec = ERRORS[code];
  return sections.get(code) ?? `## ${code}\n\nHTTP ${spec.status}. ${spec.message}\n\nWhat to do: ${spec.hint}\n\n`;
}).join('');
writeFileSync(path, `${preamble}${body}`.trimEnd() + '\n');
