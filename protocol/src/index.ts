export * from './api-key.js';
export * from './env.js';
export * from './envelope.js';
export * from './errors.js';
export * from './ids.js';
export * from './money.js';
export * from './signature.js';
