/**
 * What every section compiler (compile.ts and the files beside it) shares: the config's folder
 * (relative paths resolve against it), the clock, and where problems and file digests go. A
 * section reports each problem at its YAML path and carries on, so `check` prints them all at once.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ConfigIssue, Locator } from './load.js';
import { formatPath } from './load.js';

export class CompileContext {
  /** In the order found. */
  readonly issues: ConfigIssue[] = [];
  /** SHA-256 (hex) of every file read, by absolute path, in the order read. */
  readonly digests = new Map<string, string>();
  readonly #base: string;
  readonly #locate: Locator;

  constructor(
    configFile: string,
    locate: Locator,
    readonly now: number,
  ) {
    this.#base = path.dirname(path.resolve(configFile));
    this.#locate = locate;
  }

  /** A path from the config, relative to the config file's folder. */
  resolve(file: string): string {
    return path.resolve(this.#base, file);
  }

  add(p: readonly PropertyKey[], message: string, code: ConfigIssue['code'] = 'file'): void {
    this.issues.push({ code, path: formatPath(p), ...this.#locate(p), message });
  }

  /** The file's bytes (digest recorded), or null with the problem reported at `p`. */
  async read(file: string, p: readonly PropertyKey[]): Promise<Buffer | null> {
    try {
      const buf = await readFile(file);
      this.digests.set(file, createHash('sha256').update(buf).digest('hex'));
      return buf;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.add(p, code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${code ?? 'error'}`);
      return null;
    }
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
