// Alternative upstream (BENCH_UPSTREAM=node): a Node http server answering the same fixed small
// JSON body as bench/nginx-upstream.conf. nginx is the default because it spends several times
// less CPU per request on the core it shares with the load generator (see bench/README.md).
//   node bench/upstream.mjs PORT
import http from 'node:http';

const body = Buffer.from('{"ok":true}\n');
const server = http.createServer({ keepAliveTimeout: 300_000 }, (req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 300_000;
server.listen(Number(process.argv[2]), '127.0.0.1');
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
