/**
 * Reloads (SPEC §7): watch the folders of every file the config names (so
 * Kubernetes' `..data` symlink swap is seen), debounce, load and compile the new version in
 * full, and swap it in only if it is good. A bad version is refused: the old one keeps
 * serving, the error is logged and counted. Unchanged inputs are not reloaded at all, so open
 * connections are not re-judged for nothing.
 *
 * Every reload asked for (SIGHUP, `reload()`) is logged and counted, "unchanged" included (as a
 * success), and sets the last-reload gauges. A watched change that turns out to change nothing
 * (an editor's swap file in the folder, say) is only logged at debug level, unless the previous
 * attempt failed: then it is the file being fixed, and counted as the success it is.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import path from 'node:path';
import { loadAndCompile } from '../config/index.js';
import { logWarnings } from '../config/warnings.js';
import type { Snapshot } from '../config/snapshot.js';
import type { Log } from '../log.js';
import type { Metrics } from '../admin/metrics.js';
import { describeError } from '../errors.js';

export interface ReloadTarget {
  readonly snapshot: Snapshot;
  readonly metrics: Metrics;
  swap(next: Snapshot): string[];
}

export type ReloadOutcome = 'applied' | 'unchanged' | 'failed';

export interface ReloaderOptions {
  readonly debounceMs?: number;
  /** Extra files to watch (e.g. a JWKS file or jti denylist) beyond those in the snapshot. */
  readonly extraFiles?: () => readonly string[];
}

interface QueuedReload {
  trigger: string;
  /** Asked for (SIGHUP, reload()) rather than seen by the folder watch. */
  asked: boolean;
  outcome: Promise<ReloadOutcome>;
}

export class Reloader {
  readonly #target: ReloadTarget;
  readonly #configFile: string;
  readonly #log: Log;
  readonly #debounceMs: number;
  readonly #extraFiles: () => readonly string[];
  #watchers = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<ReloadOutcome> | null = null;
  #queued: QueuedReload | null = null;
  #closed = false;
  /** start() was called: reload() alone (a SIGHUP-only reloader, a test) never watches. */
  #watching = false;
  /** The last attempt was refused: the next good one is logged and counted whatever its trigger. */
  #failing = false;

  constructor(target: ReloadTarget, configFile: string, log: Log, opts: ReloaderOptions = {}) {
    this.#target = target;
    this.#configFile = path.resolve(configFile);
    this.#log = log;
    this.#debounceMs = opts.debounceMs ?? 250;
    this.#extraFiles = opts.extraFiles ?? (() => []);
  }

  /** Start watching the folders of every input file. */
  start(): void {
    this.#watching = true;
    this.#rewatch();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  /**
   * Reload now (SIGHUP, or a caller that wants one): always logged and counted. One reload runs
   * at a time; a call made while one runs queues exactly one more (shared by every caller until
   * it starts), which reads the files as they are then, so a caller always gets the outcome for
   * content at least as new as when it called. Never rejects.
   */
  reload(trigger: string): Promise<ReloadOutcome> {
    return this.#request(trigger, true);
  }

  #request(trigger: string, asked: boolean): Promise<ReloadOutcome> {
    const queued = this.#queued;
    if (queued !== null) {
      // Joining a queued watch reload makes it an asked-for one: it must be counted and logged.
      if (asked && !queued.asked) {
        queued.asked = true;
        queued.trigger = trigger;
      }
      return queued.outcome;
    }
    const previous = this.#running;
    // `outcome` is set just below, before anyone can read the job.
    const job: QueuedReload = { trigger, asked, outcome: Promise.resolve<ReloadOutcome>('unchanged') };
    const start = (): Promise<ReloadOutcome> => {
      if (this.#queued === job) this.#queued = null;
      return this.#closed ? Promise.resolve('unchanged') : this.#reloadOnce(job.trigger, job.asked);
    };
    const run = (previous ?? Promise.resolve<unknown>(undefined)).then(start, start);
    job.outcome = run;
    if (previous !== null) this.#queued = job;
    this.#running = run;
    void run.finally(() => {
      if (this.#running === run) this.#running = null;
    });
    return run;
  }

  async #reloadOnce(trigger: string, asked: boolean): Promise<ReloadOutcome> {
    try {
      return await this.#attempt(trigger, asked);
    } catch (err) {
      // Not a refused config (those are values): a bug or an I/O surprise. Still a failed
      // reload, seen as one, and never an unhandled rejection out of a signal handler.
      this.#failed();
      this.#log.error({ trigger, err: describeError(err) }, 'reload failed: the previous configuration keeps serving');
      return 'failed';
    }
  }

  async #attempt(trigger: string, asked: boolean): Promise<ReloadOutcome> {
    const prev = this.#target.snapshot;
    const outcome = await loadAndCompile(this.#configFile, prev.generation + 1);
    if (!outcome.ok) {
      this.#failed();
      this.#log.error({ trigger, errors: outcome.lines }, 'reload refused: the previous configuration keeps serving');
      return 'failed';
    }
    const next = outcome.snapshot;
    const changed = changedFiles(prev, next);
    if (changed.length === 0) {
      if (asked || this.#failing) {
        const recovered = this.#failing;
        this.#succeeded();
        this.#log.info({ trigger, generation: prev.generation, ...(recovered ? { recovered } : {}) }, 'reload: nothing changed');
      } else {
        this.#log.debug({ trigger }, 'reload: nothing changed');
      }
      return 'unchanged';
    }
    const warnings = this.#target.swap(next);
    this.#succeeded();
    this.#log.info(
      { trigger, generation: next.generation, changed, certificates: certChanges(prev, next), ...(warnings.length > 0 ? { warnings } : {}) },
      'configuration reloaded',
    );
    logWarnings(this.#log, this.#configFile, outcome.warnings);
    this.#rewatch();
    return 'applied';
  }

  #failed(): void {
    this.#failing = true;
    this.#target.metrics.reload('failure');
  }

  #succeeded(): void {
    this.#failing = false;
    this.#target.metrics.reload('success');
  }

  #schedule(file: string): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#request(`watch:${file}`, false);
    }, this.#debounceMs);
    this.#timer.unref();
  }

  /** Watch folders, not files: a symlink swap replaces the file the watch was on. */
  /** After a reload the watched folders follow the new files, if watching was started at all. */
  #rewatch(): void {
    if (this.#closed || !this.#watching) return;
    const files = [this.#configFile, ...this.#target.snapshot.fileDigests.keys(), ...this.#extraFiles()];
    const dirs = new Set(files.map((f) => path.dirname(f)));
    for (const [dir, w] of this.#watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => this.#schedule(name === null ? dir : path.join(dir, name)));
        w.on('error', (err) => this.#log.warn({ dir, err: err.message }, 'watch failed; SIGHUP still reloads'));
        this.#watchers.set(dir, w);
      } catch (err) {
        this.#log.warn({ dir, err: (err as Error).message }, 'cannot watch folder; SIGHUP still reloads');
      }
    }
  }
}

function changedFiles(prev: Snapshot, next: Snapshot): Array<{ file: string; from: string | null; to: string | null }> {
  const out: Array<{ file: string; from: string | null; to: string | null }> = [];
  for (const [file, digest] of next.fileDigests) {
    const old = prev.fileDigests.get(file) ?? null;
    if (old !== digest) out.push({ file, from: old === null ? null : old.slice(0, 16), to: digest.slice(0, 16) });
  }
  for (const [file, digest] of prev.fileDigests) {
    if (!next.fileDigests.has(file)) out.push({ file, from: digest.slice(0, 16), to: null });
  }
  return out;
}

/** Thumbprints of certificates that came or went: what an operator wants to see on rotation. */
function certChanges(prev: Snapshot, next: Snapshot): Array<{ role: string; subject: string; from?: string; to?: string }> {
  const out: Array<{ role: string; subject: string; from?: string; to?: string }> = [];
  const before = new Map(prev.certs.map((c) => [`${c.role}:${c.sha256}`, c]));
  const after = new Map(next.certs.map((c) => [`${c.role}:${c.sha256}`, c]));
  for (const [k, c] of after) if (!before.has(k)) out.push({ role: c.role, subject: c.subject, to: `sha256:${c.sha256}` });
  for (const [k, c] of before) if (!after.has(k)) out.push({ role: c.role, subject: c.subject, from: `sha256:${c.sha256}` });
  return out;
}
