export * from './ssrf/index.js';
