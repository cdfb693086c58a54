export * from './evm/index.js';
export * from './relay/stand-in.js';
export * from './solana/index.js';
