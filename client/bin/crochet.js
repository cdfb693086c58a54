#!/usr/bin/env node
// The `crochet` CLI. The package ships TypeScript sources, so the CLI runs them through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
