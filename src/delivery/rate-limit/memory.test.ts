// Runs the rate limiter contract against the in-process limiter.
import { runRateLimiterContract } from './contract.js';
import { createMemoryRateLimiter } from './memory.js';

runRateLimiterContract('memory', { create: (o) => createMemoryRateLimiter(o), shared: false });
