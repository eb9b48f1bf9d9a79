// Prometheus metrics of the service: HTTP request counters and latency, outbox messages by status, and this
// instance's dispatcher (outcomes, errors, messages held and in flight, paused apps).
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram, type Metric } from 'prom-client';
import type { DispatcherCounters, DispatcherStatus } from '../delivery/dispatcher.js';
import type { Store } from '../store/store.js';

function once<T extends Metric>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** Dispatcher counters as `wxsub_dispatcher_outcomes_total{outcome}` and `wxsub_dispatcher_errors_total{kind}`. */
const OUTCOMES: [string, keyof DispatcherCounters][] = [
  ['sent', 'sent'],
  ['failed', 'failed'],
  ['unknown', 'unknown'],
  ['retried', 'retried'],
  ['lease_lost', 'leaseLost'],
];
const ERRORS: [string, keyof DispatcherCounters][] = [
  ['store', 'storeErrors'],
  ['rate_limiter', 'rateLimiterErrors'],
  ['token', 'tokenErrors'],
];

/**
 * The dispatcher's metrics, read from `status()` when scraped (nothing on the send path): counters since the
 * instance started, messages held and in flight, and each paused app with the time it resumes.
 */
function installDispatcherMetrics(registry: Registry, status: () => DispatcherStatus | null): void {
  const counter = (name: string, help: string, label: string, pairs: [string, keyof DispatcherCounters][]) =>
    once(
      registry,
      name,
      () =>
        new Counter({
          name,
          help,
          labelNames: [label],
          registers: [registry],
          collect() {
            const c = status()?.counters;
            this.reset();
            if (c !== undefined) for (const [value, key] of pairs) this.inc({ [label]: value }, c[key]);
          },
        }),
    );
  counter(
    'wxsub_dispatcher_outcomes_total',
    "Outcomes this instance's dispatcher recorded, by outcome",
    'outcome',
    OUTCOMES,
  );
  counter(
    'wxsub_dispatcher_errors_total',
    'Messages put back unsent or cycles retried, by cause (store, rate limiter, access token)',
    'kind',
    ERRORS,
  );
  once(
    registry,
    'wxsub_dispatcher_messages',
    () =>
      new Gauge({
        name: 'wxsub_dispatcher_messages',
        help: 'Messages this instance holds: claimed (held) and being sent to WeChat (in_flight)',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          const s = status();
          this.set({ state: 'held' }, s?.held ?? 0);
          this.set({ state: 'in_flight' }, s?.inFlight ?? 0);
        },
      }),
  );
  once(
    registry,
    'wxsub_app_paused_until_seconds',
    () =>
      new Gauge({
        name: 'wxsub_app_paused_until_seconds',
        help: 'Apps whose sending is paused (45009 daily quota, 45011 minute limit): when sending resumes (unix s)',
        labelNames: ['app_id'],
        registers: [registry],
        collect() {
          this.reset();
          for (const p of status()?.pausedApps ?? [])
            this.set({ app_id: p.appId }, Math.ceil(p.until / 1000));
        },
      }),
  );
}

/**
 * Adds request metrics hooks and GET /metrics. Safe to call twice on one registry (metrics are reused).
 * `wxsub_outbox_messages{status}` is computed on scrape with one COUNT query; the dispatcher's metrics (when
 * `dispatcherStatus` is given) from its status.
 */
export function installMetrics(
  app: FastifyInstance,
  registry: Registry,
  store: Store,
  appId: string,
  dispatcherStatus?: () => DispatcherStatus | null,
): void {
  if (dispatcherStatus !== undefined) installDispatcherMetrics(registry, dispatcherStatus);
  const requests = once(
    registry,
    'wxsub_http_requests_total',
    () =>
      new Counter({
        name: 'wxsub_http_requests_total',
        help: 'HTTP requests by method, route and status',
        labelNames: ['method', 'route', 'status'],
        registers: [registry],
      }),
  );
  const latency = once(
    registry,
    'wxsub_http_request_duration_seconds',
    () =>
      new Histogram({
        name: 'wxsub_http_request_duration_seconds',
        help: 'HTTP request latency by method and route',
        labelNames: ['method', 'route'],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [registry],
      }),
  );
  once(
    registry,
    'wxsub_outbox_messages',
    () =>
      new Gauge({
        name: 'wxsub_outbox_messages',
        help: 'Outbox messages by status',
        labelNames: ['status'],
        registers: [registry],
        async collect() {
          const stats = await store.outbox.countMessages({ appId });
          for (const [status, n] of Object.entries(stats)) if (status !== 'total') this.set({ status }, n);
        },
      }),
  );

  // Label objects are made once per (method, route, status) and reused: the hook runs on every request, and
  // the series set is small and bounded (route patterns, not URLs; unmatched routes share one label).
  type Labels = {
    counter: { method: string; route: string; status: string };
    histogram: { method: string; route: string };
  };
  const labelSets = new Map<string, Labels>();
  const labelsOf = (method: string, route: string, status: number): Labels => {
    const key = `${method} ${status} ${route}`;
    let l = labelSets.get(key);
    if (l === undefined) {
      l = { counter: { method, route, status: String(status) }, histogram: { method, route } };
      labelSets.set(key, l);
    }
    return l;
  };
  app.addHook('onResponse', (request, reply, done) => {
    const l = labelsOf(request.method, request.routeOptions.url ?? '(unmatched)', reply.statusCode);
    requests.inc(l.counter);
    latency.observe(l.histogram, reply.elapsedTime / 1000);
    done();
  });

  app.get('/metrics', async (_request, reply) => {
    const body = await registry.metrics();
    return reply.header('content-type', registry.contentType).send(body);
  });
}
