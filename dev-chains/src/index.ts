export * from './evm/index.js';
export * from './faucet.js';
export * from './payment-network.js';
export * from './relay/stand-in.js';
export * from './solana/index.js';
