// Runs the TokenStore contract against the in-memory adapter.
import { runTokenStoreContract } from './contract.js';
import { createMemoryTokenStore } from './memory.js';

runTokenStoreContract('memory', {
  create: async () => createMemoryTokenStore(),
  sharesAcrossInstances: false,
});
