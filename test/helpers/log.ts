/** An operational logger whose lines a test can read. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Log } from '../../src/log.js';

export type LogLine = { level: number; msg: string } & Record<string, unknown>;

/** A pino logger (level info) whose lines land, parsed, in `lines`. */
export function captureLog(lines: LogLine[]): Log {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}
