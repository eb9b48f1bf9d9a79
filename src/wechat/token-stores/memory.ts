// In-process TokenStore: the default when no shared store is given (one process only).
import {
  decideForceRefresh,
  type ForceRefreshBudget,
  type ForceRefreshDecision,
  type NewToken,
  type StoredToken,
  type TokenStore,
} from '../token-store.js';

type Row = {
  token: StoredToken | undefined;
  generation: number;
  leaseOwner: string | null;
  leaseUntil: number;
  fr: { day: string | null; count: number; lastAt: number | null };
};

/**
 * Creates a TokenStore held in memory. Shares nothing across processes.
 * @example const store = createMemoryTokenStore();
 */
export function createMemoryTokenStore(): TokenStore {
  const rows = new Map<string, Row>();
  const row = (key: string): Row => {
    let r = rows.get(key);
    if (!r) {
      r = {
        token: undefined,
        generation: 0,
        leaseOwner: null,
        leaseUntil: 0,
        fr: { day: null, count: 0, lastAt: null },
      };
      rows.set(key, r);
    }
    return r;
  };
  return {
    async get(key) {
      const t = rows.get(key)?.token;
      return t ? { ...t } : undefined;
    },
    async tryAcquireLease(key, owner, ttlMs, now) {
      const r = row(key);
      if (r.leaseOwner !== null && r.leaseOwner !== owner && r.leaseUntil > now) return false;
      r.leaseOwner = owner;
      r.leaseUntil = now + ttlMs;
      return true;
    },
    async releaseLease(key, owner) {
      const r = rows.get(key);
      if (r && r.leaseOwner === owner) {
        r.leaseOwner = null;
        r.leaseUntil = 0;
      }
    },
    async put(key, token: NewToken, ifGeneration?: number) {
      const r = row(key);
      if (ifGeneration !== undefined && r.token && r.token.generation !== ifGeneration) return { ...r.token };
      r.generation += 1;
      r.token = {
        value: token.value,
        expiresAt: token.expiresAt,
        fetchedAt: token.fetchedAt,
        generation: r.generation,
        boundGeneration: token.boundGeneration,
      };
      return { ...r.token };
    },
    async invalidate(key, value) {
      const r = rows.get(key);
      if (!r?.token || r.token.value !== value) return false;
      r.token = undefined;
      return true;
    },
    async reserveForceRefresh(key, now, budget: ForceRefreshBudget): Promise<ForceRefreshDecision> {
      const r = row(key);
      const { decision, next } = decideForceRefresh(r.fr, now, budget);
      if (next) r.fr = next;
      return decision;
    },
    async close() {
      rows.clear();
    },
  };
}
