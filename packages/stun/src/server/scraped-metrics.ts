import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * How natkit's servers (stunserver, relayserver, signalserver) define their Prometheus
 * metrics through prom-client: every series is read from the server's plain counters when
 * scraped (a collect() callback), so counting on a hot path stays a field increment and a
 * scrape costs what it reads. A counter is reset and set to the total it reads; a labelled
 * counter gets one series per pair `read()` gives (a pair with 0 makes a series at 0).
 */
export interface ScrapedMetrics {
  counter(name: string, help: string, read: () => number): void;
  gauge(name: string, help: string, read: () => number): void;
  labelled(name: string, help: string, label: string, read: () => Iterable<readonly [string, number]>): void;
  labelledGauge(name: string, help: string, label: string, read: () => Iterable<readonly [string, number]>): void;
}

/** ScrapedMetrics that register in `registry`. */
export function scrapedMetrics(registry: Registry): ScrapedMetrics {
  const registers = [registry];
  return {
    counter(name, help, read) {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    },
    gauge(name, help, read) {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    },
    labelled(name, help, label, read) {
      new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset();
          for (const [value, n] of read()) this.inc({ [label]: value }, n);
        },
      });
    },
    labelledGauge(name, help, label, read) {
      new Gauge({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          for (const [value, n] of read()) this.set({ [label]: value }, n);
        },
      });
    },
  };
}
