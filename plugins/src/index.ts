import './fetch-compat.js';

export * from './admission/index.js';
export * from './http-common/index.js';
export * from './metrics/index.js';
export * from './payments/index.js';
export * from './process-guard/index.js';
export * from './receipts/index.js';
export * from './seller-verifier/index.js';
export * from './ssrf/index.js';
export * from './usage-events/index.js';
