// Prometheus metrics of the service: HTTP request counters and latency, outbox messages by status.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram, type Metric } from 'prom-client';
import type { Store } from '../store/store.js';

function once<T extends Metric>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/**
 * Adds request metrics hooks and GET /metrics. Safe to call twice on one registry (metrics are reused).
 * `wxsub_outbox_messages{status}` is computed on scrape with one COUNT query.
 */
export function installMetrics(app: FastifyInstance, registry: Registry, store: Store, appId: string): void {
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

  app.addHook('onResponse', async (request, reply) => {
    // Unmatched routes share one label so random URLs cannot blow up the series count.
    const route = request.routeOptions.url ?? '(unmatched)';
    requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    latency.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  app.get('/metrics', async (_request, reply) => {
    const body = await registry.metrics();
    return reply.header('content-type', registry.contentType).send(body);
  });
}
