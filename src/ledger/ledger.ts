// The grant ledger's domain rules over the GrantRepo port: picking a scene for `scene=auto` and a user's holdings.
import type { Grant, GrantRepo, NotificationCredit } from '../store/store.js';

/** The scene range WeChat accepts on the one-time consent URL. */
export const SCENE_RANGE = { min: 0, max: 10_000 } as const;

/** States in which a scene still holds (or is about to use) a send right; a new confirm there adds nothing. */
const OPEN_STATES: ReadonlySet<Grant['state']> = new Set(['available', 'reserved']);

/**
 * The lowest scene in `range` that is not open (available or reserved) for the user, so a new confirm there adds
 * a send right instead of being swallowed by the no-stacking rule. Consumed/revoked scenes are reused: a new
 * confirm re-opens them. Returns null when every scene in the range is open.
 * @param openScenes scenes currently available or reserved for (app, openid, template)
 * @param range inclusive bounds @default { min: 0, max: 10000 }
 * @example pickAutoScene([0, 1, 3]) // 2
 */
export function pickAutoScene(
  openScenes: readonly number[],
  range: { min: number; max: number } = SCENE_RANGE,
): number | null {
  const taken = new Set(openScenes);
  const min = Math.max(SCENE_RANGE.min, Math.ceil(range.min));
  const max = Math.min(SCENE_RANGE.max, Math.floor(range.max));
  for (let s = min; s <= max; s++) if (!taken.has(s)) return s;
  return null;
}

/** What one user holds for one template. */
export type TemplateHolding = {
  templateId: string;
  /** One-time scenes ready to send, ascending. */
  availableScenes: number[];
  /** One-time scenes held by queued/sending messages, ascending. */
  reservedScenes: number[];
  /** Notification credits that can still be reserved (0 when none). */
  notificationCredits: number;
  /** Notification credits held by queued/sending messages. */
  reservedCredits: number;
  /** Long-term notification subscription: sends need no credit. */
  longTerm: boolean;
};

/** A user's holdings across templates. */
export type Holdings = { appId: string; openid: string; templates: TemplateHolding[] };

/** The ledger's domain operations. */
export interface Ledger {
  /** The scene to put on a consent link for `scene=auto` (see {@link pickAutoScene}). */
  pickAutoScene(input: {
    appId: string;
    openid: string;
    templateId: string;
    min?: number;
    max?: number;
  }): Promise<number | null>;
  /** Everything the user holds, per template (templates with nothing open are left out). */
  holdings(input: { appId: string; openid: string }): Promise<Holdings>;
}

/**
 * Creates the ledger over a grant repository.
 * @example const ledger = createLedger({ grants: store.grants }); await ledger.pickAutoScene({ appId, openid, templateId })
 */
export function createLedger(deps: { grants: GrantRepo }): Ledger {
  return {
    async pickAutoScene(i) {
      const { grants } = await deps.grants.listForUser({
        appId: i.appId,
        openid: i.openid,
        templateId: i.templateId,
      });
      const open = grants.filter((g) => OPEN_STATES.has(g.state)).map((g) => g.scene);
      return pickAutoScene(open, { min: i.min ?? SCENE_RANGE.min, max: i.max ?? SCENE_RANGE.max });
    },
    async holdings(i) {
      const { grants, credits } = await deps.grants.listForUser(i);
      return { appId: i.appId, openid: i.openid, templates: summarise(grants, credits) };
    },
  };
}

/** Folds grant and credit rows into per-template holdings, sorted by template id. */
export function summarise(
  grants: readonly Grant[],
  credits: readonly NotificationCredit[],
): TemplateHolding[] {
  const by = new Map<string, TemplateHolding>();
  const entry = (templateId: string): TemplateHolding => {
    let h = by.get(templateId);
    if (!h) {
      h = {
        templateId,
        availableScenes: [],
        reservedScenes: [],
        notificationCredits: 0,
        reservedCredits: 0,
        longTerm: false,
      };
      by.set(templateId, h);
    }
    return h;
  };
  for (const g of grants) {
    if (g.state === 'available') entry(g.templateId).availableScenes.push(g.scene);
    else if (g.state === 'reserved') entry(g.templateId).reservedScenes.push(g.scene);
  }
  for (const c of credits) {
    if (c.available === 0 && c.reserved === 0 && !c.longTerm) continue;
    const h = entry(c.templateId);
    h.notificationCredits = c.available;
    h.reservedCredits = c.reserved;
    h.longTerm = c.longTerm;
  }
  const out = [...by.values()].sort((a, b) =>
    a.templateId < b.templateId ? -1 : a.templateId > b.templateId ? 1 : 0,
  );
  for (const h of out) {
    h.availableScenes.sort((a, b) => a - b);
    h.reservedScenes.sort((a, b) => a - b);
  }
  return out;
}
