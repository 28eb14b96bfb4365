// The demo app behind the sidecar: plain HTTP on loopback, echoing who called it.
import http from 'node:http';

const port = Number(process.env.PORT ?? 8080);
http
  .createServer((req, res) => {
    const body = JSON.stringify(
      {
        hello: req.headers['x-client-identity'] ?? 'anonymous',
        scopes: req.headers['x-client-scopes'] ?? '',
        method: req.method,
        path: req.url,
        xfcc: req.headers['x-forwarded-client-cert'] ?? null,
        requestId: req.headers['x-request-id'] ?? null,
      },
      null,
      2,
    );
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${body}\n`);
  })
  .listen(port, '127.0.0.1', () => console.error(`demo app on http://127.0.0.1:${port}`));
