/** One throwaway PKI for the whole run (the same node-forge code as `mtls-sidecar certs`). */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { makeTestPki } from './helpers/pki.js';
import type { TestPki } from './helpers/pki.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pki: TestPki;
  }
}

let dir = '';

export async function setup(project: TestProject): Promise<void> {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-pki-'));
  project.provide('pki', await makeTestPki(dir));
}

export async function teardown(): Promise<void> {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
}
