/**
 * `mtls-sidecar fingerprint FILE...`: prints, for every certificate in PEM files, the values an
 * operator copies into the config (`sha256:` thumbprint, `spki:` pin) plus enough context
 * (subject, SANs, expiry) to be sure it is the right certificate.
 *
 * Parsing uses node:crypto's X509Certificate (OpenSSL), not forge: it must handle the EC and
 * Ed25519 certificates real PKIs issue, and it is the same parser the TLS stack uses.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { decodePem } from '../pki/pem.js';
import { sha256Thumbprint, spkiPin } from '../pki/thumbprint.js';
import { parseArgsMessage, printable } from './io.js';
import type { CommandIo } from './io.js';

const USAGE = `Usage: mtls-sidecar fingerprint FILE...

For each certificate in each PEM file (a file may hold several), prints its subject, SANs,
expiry, SHA-256 thumbprint and SPKI pin, in the forms tls.pins accepts:
  sha256:AB:CD:...   (SHA-256 of the DER certificate)
  spki:<base64>      (SHA-256 of the SubjectPublicKeyInfo; survives re-issuing with the same key)
and the thumbprint as the audit log (certSha256) and x-forwarded-client-cert (Hash) write it:
  hex:   abcd...     (the same SHA-256, lower-case hex without colons)`;


export interface CertSummary {
  subject: string;
  sans: string;
  notAfter: Date;
  sha256: string;
  spki: string;
}

export function summarize(x509: X509Certificate): CertSummary {
  return {
    // Node returns one RDN per line, control characters already escaped by OpenSSL.
    subject: x509.subject.split('\n').join(', '),
    sans: x509.subjectAltName ?? '',
    notAfter: x509.validToDate,
    sha256: sha256Thumbprint(x509.raw),
    spki: spkiPin(x509),
  };
}

export function fsMessage(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return e instanceof Error ? e.message : String(e);
  }
}

/**
 * Runs `fingerprint` with the arguments that follow the command name. Returns 0 when every file
 * held at least one readable certificate, 2 otherwise (one stderr line per bad file).
 */
export async function fingerprintCommand(argv: string[], io: CommandIo): Promise<number> {
  let files: string[];
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: { help: { type: 'boolean', short: 'h', default: false }, debug: { type: 'boolean', default: false } },
    });
    if (values.help) {
      io.stdout(USAGE);
      return 0;
    }
    files = positionals;
  } catch (e) {
    io.stderr(`fingerprint: ${parseArgsMessage(e)}`);
    return 2;
  }
  if (files.length === 0) {
    io.stderr('fingerprint: no FILE given (usage: mtls-sidecar fingerprint FILE...)');
    return 2;
  }

  let failed = false;
  let first = true;
  for (const file of files) {
    const shown = printable(file);
    let text: string;
    try {
      text = await readFile(file, 'latin1'); // PEM is ASCII; latin1 never throws on binary
    } catch (e) {
      io.stderr(`fingerprint: ${shown}: cannot read: ${fsMessage(e)}`);
      failed = true;
      continue;
    }
    const ders = decodePem(text).blocks.filter((b) => b.label === 'CERTIFICATE');
    if (ders.length === 0) {
      io.stderr(`fingerprint: ${shown}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)`);
      failed = true;
      continue;
    }
    const summaries: CertSummary[] = [];
    let bad = 0;
    for (const [i, block] of ders.entries()) {
      try {
        summaries.push(summarize(new X509Certificate(block.der)));
      } catch {
        bad = i + 1;
        break;
      }
    }
    if (bad > 0) {
      io.stderr(`fingerprint: ${shown}: certificate #${bad} is not a valid X.509 certificate`);
      failed = true;
      continue;
    }
    summaries.forEach((s, i) => {
      if (!first) io.stdout('');
      first = false;
      io.stdout(summaries.length > 1 ? `${shown} [${i + 1}/${summaries.length}]` : shown);
      io.stdout(`  subject:   ${printable(s.subject)}`);
      io.stdout(`  san:       ${printable(s.sans) || '(none)'}`);
      io.stdout(`  not-after: ${s.notAfter.toISOString()}`);
      io.stdout(`  sha256:${s.sha256}`);
      io.stdout(`  spki:${s.spki}`);
      io.stdout(`  hex:   ${s.sha256.replaceAll(':', '').toLowerCase()}`);
    });
  }
  return failed ? 2 : 0;
}
