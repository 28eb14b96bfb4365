/**
 * PEM framing (RFC 7468). Kept separate from DER so the CLI and config loader can find every
 * block of one label in a bundle file (several CAs, several CRLs, leaf + chain).
 */

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
// Strict base64 after whitespace removal: Buffer.from(..., 'base64') would silently skip junk.
const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface PemBlock {
  label: string;
  der: Buffer;
}

/**
 * Every well-formed PEM block in `text`, in order. Blocks with invalid base64 (or RFC 1421
 * headers such as encrypted keys' `Proc-Type`) are reported through `invalid` rather than
 * dropped silently, so callers can say which file is broken.
 */
export function decodePem(text: string): { blocks: PemBlock[]; invalid: string[] } {
  const blocks: PemBlock[] = [];
  const invalid: string[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    const label = m[1] ?? '';
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (!B64_RE.test(body) || body.length === 0) {
      invalid.push(label);
      continue;
    }
    blocks.push({ label, der: Buffer.from(body, 'base64') });
  }
  return { blocks, invalid };
}

/** DER of every block labelled `label` (e.g. "CERTIFICATE", "X509 CRL"). */
export function pemBlocks(text: string, label: string): Buffer[] {
  return decodePem(text)
    .blocks.filter((b) => b.label === label)
    .map((b) => b.der);
}

export function encodePem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}\n`;
  return `${out}-----END ${label}-----\n`;
}
