import { exportJWK, generateKeyPair } from 'jose';
import { type PaymentStack, startPaymentStack } from '../../proxy/test/payment-stack.js';

/** The paid stack on the dev chains (proxy/test/payment-stack.ts) with a receipt key, as a deployment signs with. */
export const startSdkStack = async (
  options: { proxyEnv?: Record<string, string>; proxies?: number } = {},
): Promise<PaymentStack> => {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const keys = JSON.stringify([{ ...(await exportJWK(privateKey)), kid: 'sdk-test' }]);
  return startPaymentStack({
    ...(options.proxies ? { proxies: options.proxies } : {}),
    proxyEnv: { CROCHET_RECEIPT_KEYS: keys, ...options.proxyEnv },
    planeEnv: { CROCHET_RECEIPT_KEYS: keys },
  });
};
