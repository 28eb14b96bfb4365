/**
 * The jti denylist file: one revoked token id per line. Blank lines and lines starting with `#`
 * are ignored; an id may be followed by whitespace and a `#` comment
 * (`3f2c9a  # leaked 2025-01-04`). Anything else after the id is an error with its line number,
 * so a pasted "id, id" or a stray word is not silently half-applied.
 */
import { JwtError, readJwtFile } from './errors.js';

const MAX_ID_LENGTH = 1024;

export function parseDenylist(text: string, file: string): ReadonlySet<string> {
  const out = new Set<string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)(?:\s+(.*))?$/.exec(line);
    const id = m?.[1];
    const rest = m?.[2];
    if (id === undefined || (rest !== undefined && rest !== '' && !rest.startsWith('#'))) {
      throw new JwtError('ERR_DENYLIST', ['jwt', 'denylist'], `${file} line ${i + 1}: one token id per line (a comment after it starts with #)`, { line: i + 1 });
    }
    if (id.length > MAX_ID_LENGTH) {
      throw new JwtError('ERR_DENYLIST', ['jwt', 'denylist'], `${file} line ${i + 1}: a token id longer than ${MAX_ID_LENGTH} characters`, { line: i + 1 });
    }
    out.add(id);
  }
  return out;
}

export async function loadDenylist(file: string): Promise<ReadonlySet<string>> {
  return parseDenylist((await readJwtFile(file, 'ERR_DENYLIST', ['jwt', 'denylist'])).toString('utf8'), file);
}
