// Prometheus endpoint (prom-client). Reactors count into shared memory; everything is
// read here, on the main thread, when a scrape arrives.
import { createServer, Server } from 'node:http';
import client from 'prom-client';
import type { BdevRegistry } from '../bdev/registry.js';
import type { ReactorPool } from './reactor/pool.js';
import { HIST_BUCKETS, histBucketStart, sumStats } from '../bdev/stats.js';
import { logger } from './log.js';

const log = logger('metrics');

/** Upper bounds (seconds) of the exported latency histogram. */
const LE_NS = [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];

export function buildRegistry(bdevs: BdevRegistry, pool: ReactorPool): client.Registry {
  const reg = new client.Registry();
  client.collectDefaultMetrics({ register: reg, prefix: 'vhostd_' });
  const ops = new client.Counter({ name: 'vhostd_bdev_ops_total', help: 'Completed I/Os per bdev and type',
    labelNames: ['bdev', 'type'], registers: [reg],
    collect() {
      this.reset();
      for (const b of bdevs.list()) {
        const t = sumStats(b.stats);
        this.inc({ bdev: b.name, type: 'read' }, t.readOps);
        this.inc({ bdev: b.name, type: 'write' }, t.writeOps);
        this.inc({ bdev: b.name, type: 'unmap' }, t.unmapOps);
        this.inc({ bdev: b.name, type: 'flush' }, t.flushOps);
        this.inc({ bdev: b.name, type: 'write_zeroes' }, t.wzOps);
      }
    } });
  void ops;
  new client.Counter({ name: 'vhostd_bdev_bytes_total', help: 'Bytes transferred per bdev and direction',
    labelNames: ['bdev', 'type'], registers: [reg],
    collect() {
      this.reset();
      for (const b of bdevs.list()) {
        const t = sumStats(b.stats);
        this.inc({ bdev: b.name, type: 'read' }, t.readBytes);
        this.inc({ bdev: b.name, type: 'write' }, t.writeBytes);
        this.inc({ bdev: b.name, type: 'unmap' }, t.unmapBytes);
      }
    } });
  new client.Counter({ name: 'vhostd_bdev_errors_total', help: 'Failed I/Os per bdev', labelNames: ['bdev'], registers: [reg],
    collect() { this.reset(); for (const b of bdevs.list()) this.inc({ bdev: b.name }, sumStats(b.stats).errors); } });
  new client.Counter({ name: 'vhostd_reactor_busy_seconds_total', help: 'Time reactors spent in rounds that did work',
    labelNames: ['lcore'], registers: [reg],
    collect() { this.reset(); pool.cpus.forEach((c, i) => this.inc({ lcore: String(c) }, pool.busyIdle(i).busyNs / 1e9)); } });
  new client.Counter({ name: 'vhostd_reactor_idle_seconds_total', help: 'Time reactors spent polling without work (sleeps excluded)',
    labelNames: ['lcore'], registers: [reg],
    collect() { this.reset(); pool.cpus.forEach((c, i) => this.inc({ lcore: String(c) }, pool.busyIdle(i).idleNs / 1e9)); } });
  return reg;
}

/** The latency histogram in Prometheus text format, folded from the fine-grained shared buckets. */
export function latencyHistogramText(bdevs: BdevRegistry): string {
  const lines = ['# HELP vhostd_bdev_latency_seconds I/O latency per bdev (all I/O types)',
    '# TYPE vhostd_bdev_latency_seconds histogram'];
  for (const b of bdevs.list()) {
    const t = sumStats(b.stats);
    const cum = new Array<number>(LE_NS.length).fill(0);
    let count = 0, sumNs = 0;
    for (let i = 0; i < HIST_BUCKETS; i++) {
      const n = t.histogram[i];
      if (!n) continue;
      count += n;
      const start = histBucketStart(i);
      sumNs += n * start;
      for (let k = 0; k < LE_NS.length; k++) if (start < LE_NS[k]) cum[k] += n;
    }
    const name = JSON.stringify(b.name);
    LE_NS.forEach((le, k) => lines.push(`vhostd_bdev_latency_seconds_bucket{bdev=${name},le="${le / 1e9}"} ${cum[k]}`));
    lines.push(`vhostd_bdev_latency_seconds_bucket{bdev=${name},le="+Inf"} ${count}`);
    lines.push(`vhostd_bdev_latency_seconds_sum{bdev=${name}} ${sumNs / 1e9}`);
    lines.push(`vhostd_bdev_latency_seconds_count{bdev=${name}} ${count}`);
  }
  return lines.join('\n') + '\n';
}

export async function startMetricsServer(addr: string, bdevs: BdevRegistry, pool: ReactorPool): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m) throw new Error(`--metrics ${addr}: expected HOST:PORT, e.g. 127.0.0.1:9464`);
  const reg = buildRegistry(bdevs, pool);
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') { res.writeHead(404).end('see /metrics\n'); return; }
    reg.metrics().then((text) => {
      res.writeHead(200, { 'Content-Type': reg.contentType }).end(text + latencyHistogramText(bdevs));
    }, (e: Error) => res.writeHead(500).end(e.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), m[1].replace(/^\[|\]$/g, ''), () => resolve());
  });
  server.unref();
  log.notice(`metrics on http://${addr}/metrics`);
  return server;
}
