import * as http from 'node:http';

/**
 * Counters and gauges, exposed in the Prometheus text format (version 0.0.4). Label
 * sets are fixed when a series is first used; values are plain numbers in a Map, so
 * counting on a hot path costs one Map lookup or a field increment.
 */

type Kind = 'counter' | 'gauge';

interface Family {
  name: string;
  help: string;
  kind: Kind;
  series: Map<string, { labels: Record<string, string>; value: number }>;
  /** For gauges whose value is read when scraped. */
  read?: () => Array<{ labels: Record<string, string>; value: number }>;
}

function labelKey(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
}

export class Metrics {
  private readonly families = new Map<string, Family>();

  private family(name: string, help: string, kind: Kind): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { name, help, kind, series: new Map() };
      this.families.set(name, f);
    }
    return f;
  }

  /** A counter series; returns an object whose `inc` adds to it. */
  counter(name: string, help: string, labels: Record<string, string> = {}): { inc: (n?: number) => void; get: () => number } {
    const f = this.family(name, help, 'counter');
    const key = labelKey(labels);
    let s = f.series.get(key);
    if (!s) f.series.set(key, (s = { labels, value: 0 }));
    const series = s;
    return {
      inc: (n = 1) => {
        series.value += n;
      },
      get: () => series.value,
    };
  }

  /** A gauge computed when scraped. */
  gauge(name: string, help: string, read: () => number | Array<{ labels: Record<string, string>; value: number }>): void {
    const f = this.family(name, help, 'gauge');
    f.read = () => {
      const v = read();
      return typeof v === 'number' ? [{ labels: {}, value: v }] : v;
    };
  }

  /** The exposition text. */
  render(): string {
    const out: string[] = [];
    for (const f of this.families.values()) {
      out.push(`# HELP ${f.name} ${f.help}`);
      out.push(`# TYPE ${f.name} ${f.kind}`);
      const rows = f.read ? f.read() : [...f.series.values()];
      for (const r of rows) {
        const k = labelKey(r.labels);
        out.push(`${f.name}${k ? `{${k}}` : ''} ${Number.isFinite(r.value) ? r.value : 0}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}

/** Serves `GET /metrics` (and `/healthz`) on address:port. */
export async function serveMetrics(metrics: Metrics, address: string, port: number): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    const url = req.url?.split('?')[0];
    if (req.method === 'GET' && url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(metrics.render());
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
