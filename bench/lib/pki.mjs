// A throwaway PKI for the bench, all ECDSA P-256 (node-forge only does RSA, so openssl makes it):
// a CA, a server cert (localhost, 127.0.0.1), a client cert with a SPIFFE URI SAN and clientAuth
// EKU, two workload certs for the outbound pair (pair-a, pair-b: serverAuth and clientAuth, a
// SPIFFE URI, localhost, 127.0.0.1, as `make certs` issues them), an empty CRL signed by the CA,
// and server.pem (cert + key) for HAProxy. Valid 2 days.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const CLIENT_URI = 'spiffe://cluster.local/ns/bench/sa/bench';
/** The outbound pair's workloads: A calls B. Both match the bench config's `bench` identity. */
export const PAIR_URI = { a: 'spiffe://cluster.local/ns/bench/sa/pair-a', b: 'spiffe://cluster.local/ns/bench/sa/pair-b' };

function ossl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makePki(dir, sub = 'pki') {
  const d = path.resolve(dir, sub);
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d, { recursive: true });
  const ecKey = (name) => ossl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], d);

  ecKey('ca');
  ossl(
    ['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', '/O=mtls-sidecar bench/CN=bench-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash', '-out', 'ca.crt'],
    d,
  );

  const leaf = (name, subj, ext) => {
    ecKey(name);
    fs.writeFileSync(path.join(d, `${name}.ext`), ext);
    ossl(['req', '-new', '-key', `${name}.key`, '-subj', subj, '-out', `${name}.csr`], d);
    ossl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-sha256', '-days', '2',
      '-extfile', `${name}.ext`, '-out', `${name}.crt`], d);
  };
  leaf('server', '/CN=localhost', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '',
  ].join('\n'));
  leaf('client', '/O=bench/OU=bench/CN=bench', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=clientAuth',
    `subjectAltName=URI:${CLIENT_URI}`,
    '',
  ].join('\n'));
  for (const w of ['a', 'b']) {
    leaf(`pair-${w}`, `/O=bench/OU=bench/CN=pair-${w}`, [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth,clientAuth',
      `subjectAltName=URI:${PAIR_URI[w]},DNS:localhost,IP:127.0.0.1`,
      '',
    ].join('\n'));
  }

  // Empty CRL via `openssl ca -gencrl` (needs a minimal CA database).
  fs.writeFileSync(path.join(d, 'index.txt'), '');
  fs.writeFileSync(path.join(d, 'crlnumber'), '01\n');
  fs.writeFileSync(
    path.join(d, 'ca.cnf'),
    [
      '[ ca ]', 'default_ca = bench', '[ bench ]', `dir = ${d}`, 'database = $dir/index.txt', 'crlnumber = $dir/crlnumber',
      'certificate = $dir/ca.crt', 'private_key = $dir/ca.key', 'default_md = sha256', 'default_crl_days = 2', '',
    ].join('\n'),
  );
  ossl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'crl.pem'], d);
  fs.writeFileSync(path.join(d, 'server.pem'), fs.readFileSync(path.join(d, 'server.crt')) + fs.readFileSync(path.join(d, 'server.key')));
  for (const f of fs.readdirSync(d)) if (f.endsWith('.key') || f === 'server.pem') fs.chmodSync(path.join(d, f), 0o600);
  return {
    dir: d,
    ca: path.join(d, 'ca.crt'),
    serverCert: path.join(d, 'server.crt'),
    serverKey: path.join(d, 'server.key'),
    serverPem: path.join(d, 'server.pem'),
    clientCert: path.join(d, 'client.crt'),
    clientKey: path.join(d, 'client.key'),
    crl: path.join(d, 'crl.pem'),
    pairA: { cert: path.join(d, 'pair-a.crt'), key: path.join(d, 'pair-a.key') },
    pairB: { cert: path.join(d, 'pair-b.crt'), key: path.join(d, 'pair-b.key') },
  };
}
