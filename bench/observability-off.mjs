// Bench-only preload (`node --import bench/observability-off.mjs dist/main.js run ...`): the same
// sidecar with its per-request audit line and per-request metrics turned off, to measure what
// the two cost (the target: "audit logging and metrics together cost <= 10 % of throughput,
// measured by turning them off"). Not a product feature: the product has no switch for this on
// purpose (docs/reference.md §5: every request is audited, never sampled).
//
// It patches the shared dist/ module instances before main.js loads them: Metrics#request
// becomes a no-op, and each Sidecar's audit sink drops request lines (handshake lines, the
// operational log and the admin port are untouched).
import { Metrics } from '../dist/admin/metrics.js';
import { Sidecar } from '../dist/runtime/sidecar.js';

Metrics.prototype.request = function request() {};

const listen = Sidecar.prototype.listen;
Sidecar.prototype.listen = function patchedListen(...args) {
  this.audit.request = () => {};
  return listen.apply(this, args);
};
