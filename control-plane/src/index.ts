export { CryptoBox } from '@crochet/protocol';
export type { App, AuthedAgent, Deps, RouteDoc } from './app.js';
export { type ControlPlaneConfig, loadControlPlaneConfig } from './config.js';
export { createPool, isDatabaseUnavailable, migrate } from './db.js';
export { solveChallenge } from './pow.js';
export { buildControlPlane, type ControlPlane, startControlPlane } from './server.js';
