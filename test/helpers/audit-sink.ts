/** An in-memory pino destination: audit lines parsed into objects (pino's sink() pattern). */
import type { DestinationStream } from 'pino';

export type AuditLine = Record<string, unknown> & { msg: string };

export class AuditSink implements DestinationStream {
  readonly lines: AuditLine[] = [];
  readonly raw: string[] = [];
  #waiters: Array<() => void> = [];

  write(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (line === '') continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as AuditLine);
    }
    const w = this.#waiters;
    this.#waiters = [];
    for (const fn of w) fn();
  }

  requests(): AuditLine[] {
    return this.lines.filter((l) => l.msg === 'request');
  }

  handshakes(): AuditLine[] {
    return this.lines.filter((l) => l.msg === 'handshake_rejected');
  }

  /** Wait (bounded) until a line matching `pred` arrives. */
  async waitFor(pred: (l: AuditLine) => boolean, timeoutMs = 3000): Promise<AuditLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no audit line matched within ${timeoutMs} ms; have: ${this.raw.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
