import * as http from 'node:http';
import { AggregatorRegistry, Registry, collectDefaultMetrics } from 'prom-client';
import { hostPort } from './args.js';

/**
 * The metrics endpoint of natkit's binaries: Prometheus text (prom-client) at /metrics,
 * `ok` at /healthz. A server's own registry is joined by prom-client's process, GC and
 * event-loop-lag metrics; with --workers the primary serves the sum over its workers
 * (prom-client's AggregatorRegistry asks each one when scraped).
 */

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** A registry with prom-client's process metrics (CPU, memory, GC, event-loop lag, handles). */
export function processMetrics(): Registry {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  return r;
}

/** The text of one or more registries, merged. */
export function metricsText(registries: Registry[]): Promise<string> {
  return Registry.merge(registries).metrics();
}

let aggregator: AggregatorRegistry<typeof Registry.PROMETHEUS_CONTENT_TYPE> | undefined;

/**
 * In a cluster worker: the registries the primary's scrape reads. (prom-client answers the
 * primary's requests once an AggregatorRegistry exists in the worker.)
 */
export function reportToPrimary(registries: Registry[]): void {
  aggregator ??= new AggregatorRegistry();
  AggregatorRegistry.setRegistries(registries);
}

/** In the cluster primary: the workers' metrics, summed (counters) or as prom-client aggregates each. */
export function clusterMetricsText(): Promise<string> {
  aggregator ??= new AggregatorRegistry();
  return aggregator.clusterMetrics();
}

/** Serves GET /metrics (from `text()`) and GET /healthz on address:port. */
export async function serveMetrics(text: () => Promise<string>, address: string, port: number): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    const url = req.url?.split('?')[0];
    if (req.method === 'GET' && url === '/metrics') {
      text().then(
        (body) => {
          res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE });
          res.end(body);
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics failed: ${err.message}\n`);
        },
      );
    } else if (req.method === 'GET' && url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /metrics\n');
    }
  });
  srv.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, address, () => {
      srv.off('error', reject);
      resolve();
    });
  });
  return srv;
}

/**
 * serveMetrics on `at` (undefined: none), for a binary's --metrics flag: a failure says where
 * and, for a port in use, what to do; on success the URL to print.
 */
export async function metricsEndpoint(
  at: { address: string; port: number } | undefined,
  text: () => Promise<string>,
): Promise<{ server: http.Server; url: string } | undefined> {
  if (!at) return undefined;
  let server: http.Server;
  try {
    server = await serveMetrics(text, at.address, at.port);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot serve metrics on ${hostPort(at.address, at.port)}: ${e.message}${e.code === 'EADDRINUSE' ? ' (pick another port with --metrics)' : ''}`);
  }
  const a = server.address() as { address: string; port: number };
  return { server, url: `http://${hostPort(a.address, a.port)}/metrics` };
}

/** Closes a metrics server and its keep-alive connections. */
export function closeMetrics(srv: http.Server | undefined): Promise<void> {
  if (!srv) return Promise.resolve();
  return new Promise((resolve) => {
    srv.close(() => resolve());
    srv.closeAllConnections();
  });
}
