// Template management `/wxaapi/newtmpl/*` against the built-in public library (wechat-spec.md §2.6).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { apiRoute, bodyText, formBody, jsonBody, queryParam } from '../http-util.js';
import { LIBRARY_CATEGORIES, LIBRARY_TITLES, findLibraryTitle } from '../library.js';
import type { EmulatorState } from '../state.js';
import { WX_OK, wxError } from '../wx-errors.js';

/** addtemplate/deltemplate take JSON (all SDKs) or form-urlencoded (mini-program doc) — spec §2.6. */
function readFields(
  req: FastifyRequest,
): { ok: true; get: (k: string) => unknown } | { ok: false; errcode: 44002 | 47001 } {
  const ct = String(req.headers['content-type'] ?? '');
  if (ct.includes('application/x-www-form-urlencoded')) {
    if (bodyText(req).trim() === '') return { ok: false, errcode: 44002 };
    const form = formBody(req);
    return {
      ok: true,
      get: (k) => {
        const all = form.getAll(k);
        if (k === 'kidList') {
          // kidList=1&kidList=2 or kidList=[1,2] / kidList=1,2
          if (all.length === 1 && all[0] !== undefined) {
            const one = all[0].trim();
            if (one.startsWith('[')) {
              try {
                return JSON.parse(one) as unknown;
              } catch {
                return one;
              }
            }
            return one.split(',').map((s) => (/^\d+$/.test(s.trim()) ? Number(s.trim()) : s));
          }
          return all.length ? all.map((s) => (/^\d+$/.test(s) ? Number(s) : s)) : undefined;
        }
        return all[0];
      },
    };
  }
  const body = jsonBody(req);
  if (!body.ok) return body;
  return { ok: true, get: (k) => body.value[k] };
}

/** Registers getcategory, getpubtemplatetitles, getpubtemplatekeywords, addtemplate, deltemplate, gettemplate. */
export function registerTemplateRoutes(fastify: FastifyInstance, state: EmulatorState): void {
  apiRoute(fastify, state, 'GET', '/wxaapi/newtmpl/getcategory', () => ({
    ...WX_OK,
    data: LIBRARY_CATEGORIES.map((c) => ({ ...c })),
  }));

  apiRoute(fastify, state, 'GET', '/wxaapi/newtmpl/getpubtemplatetitles', ({ req, now }) => {
    const ids = queryParam(req, 'ids');
    if (ids === undefined || ids === '') return wxError(200018, now);
    if (!/^\d+(,\d+)*$/.test(ids)) return wxError(200019, now);
    const startRaw = queryParam(req, 'start') ?? '0';
    const limitRaw = queryParam(req, 'limit') ?? '30';
    if (!/^\d{1,9}$/.test(startRaw)) return wxError(200016, now);
    if (!/^\d{1,9}$/.test(limitRaw) || Number(limitRaw) < 1 || Number(limitRaw) > 30)
      return wxError(200017, now);
    const wanted = new Set(ids.split(',').map(Number));
    const all = LIBRARY_TITLES.filter((t) => wanted.has(t.categoryId));
    const start = Number(startRaw);
    return {
      ...WX_OK,
      count: all.length,
      data: all
        .slice(start, start + Number(limitRaw))
        .map((t) => ({ tid: t.tid, title: t.title, type: t.type, categoryId: String(t.categoryId) })),
    };
  });

  apiRoute(fastify, state, 'GET', '/wxaapi/newtmpl/getpubtemplatekeywords', ({ req, now }) => {
    const tid = queryParam(req, 'tid');
    const t = tid && /^\d{1,9}$/.test(tid) ? findLibraryTitle(Number(tid)) : undefined;
    if (!t) return wxError(200014, now, tid ? 'tid does not exist' : 'missing parameter tid');
    return {
      ...WX_OK,
      count: t.keywords.length,
      data: t.keywords.map((k) => ({ kid: k.kid, name: k.name, example: k.example, rule: k.rule })),
    };
  });

  apiRoute(fastify, state, 'POST', '/wxaapi/newtmpl/addtemplate', ({ req, app, now }) => {
    const f = readFields(req);
    if (!f.ok) return wxError(f.errcode, now);
    const tidRaw = f.get('tid');
    if (tidRaw === undefined || tidRaw === null || tidRaw === '')
      return wxError(200014, now, 'missing parameter tid');
    const tidNum =
      typeof tidRaw === 'number'
        ? tidRaw
        : typeof tidRaw === 'string' && /^\d{1,9}$/.test(tidRaw)
          ? Number(tidRaw)
          : NaN;
    const lib = findLibraryTitle(tidNum);
    if (!lib) return wxError(200014, now, 'tid does not exist');
    const kidList = f.get('kidList');
    if (!Array.isArray(kidList) || kidList.length < 2 || kidList.length > 5) return wxError(200020, now);
    const kids: number[] = [];
    for (const k of kidList) {
      const n = typeof k === 'number' ? k : typeof k === 'string' && /^\d+$/.test(k) ? Number(k) : NaN;
      if (!lib.keywords.some((kw) => kw.kid === n) || kids.includes(n)) return wxError(200020, now);
      kids.push(n);
    }
    const sceneDesc = f.get('sceneDesc');
    const optional = !state.behavior.addtemplateSceneDescRequired && sceneDesc === undefined;
    if (!optional && (typeof sceneDesc !== 'string' || sceneDesc === '' || [...sceneDesc].length > 15))
      return wxError(200021, now);
    let count = 0;
    for (const t of app.templates.values()) if (t.kind === 'notification') count++;
    if (count >= state.behavior.maxPrivateTemplates) return wxError(200012, now);
    const lines: string[] = [];
    const enums: Array<{ keywordCode: string; enumValueList: string[] }> = [];
    for (const kid of kids) {
      const kw = lib.keywords.find((k) => k.kid === kid);
      if (!kw) continue;
      lines.push(`${kw.name}:{{${kw.rule}${kid}.DATA}}`);
      if (kw.enumValues)
        enums.push({ keywordCode: `${kw.rule}${kid}.DATA`, enumValueList: [...kw.enumValues] });
    }
    const tpl = state.createTemplate(app.appid, {
      kind: 'notification',
      title: lib.title,
      tid: lib.tid,
      type: lib.type,
      content: `${lines.join('\n')}\n`,
      ...(enums.length ? { keywordEnumValueList: enums } : {}),
    });
    return { ...WX_OK, priTmplId: tpl.templateId };
  });

  apiRoute(fastify, state, 'POST', '/wxaapi/newtmpl/deltemplate', ({ req, app, now }) => {
    const f = readFields(req);
    if (!f.ok) return wxError(f.errcode, now);
    const id = f.get('priTmplId');
    if (typeof id !== 'string' || id === '') return wxError(20002, now);
    const t = app.templates.get(id);
    // Spec §2.6: deleting an unknown template answers 20001.
    if (!t || t.kind !== 'notification') return wxError(20001, now);
    state.deleteTemplate(app.appid, id);
    return { ...WX_OK };
  });

  apiRoute(fastify, state, 'GET', '/wxaapi/newtmpl/gettemplate', ({ app }) => {
    const data = [];
    for (const t of app.templates.values()) {
      if (t.kind !== 'notification') continue;
      const item: Record<string, unknown> = {
        priTmplId: t.templateId,
        title: t.title,
        content: t.content,
        example: t.example,
        type: t.type,
      };
      if (t.keywordEnumValueList.length) item.keywordEnumValueList = t.keywordEnumValueList;
      data.push(item);
    }
    return { ...WX_OK, data };
  });
}
