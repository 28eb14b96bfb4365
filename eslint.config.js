// typescript-eslint with type information: its strict, type-checked rules, plus the project's
// bans (no `any`, `import type`, no console, `process.exit` only in main.ts, no wall clock in
// the request stages, where the clock is injected).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const NON_NULL_ONLY_ON_INDEX = {
  selector: "TSNonNullExpression:not([expression.type='MemberExpression'][expression.computed=true])",
  message: 'A `!` only on an index read after its bounds check; elsewhere narrow the type.',
};
const STAGES = ['src/tls/**', 'src/identity/**', 'src/policy/**', 'src/ratelimit/**', 'src/jwt/**', 'src/pki/**'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'certs/**', 'coverage/**', '.tmp/**', 'bench/**', 'examples/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'separate-type-imports' }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // `return refuse(...)` in a void function is this codebase's early exit (pipeline, admin).
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true, ignoreVoidReturningFunctions: true }],
      // Matching control bytes is the point of the sanitizers and field checks that use them.
      'no-control-regex': 'off',
      // `const { crl: _crl, ...rest } = x` drops a field on purpose.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
      'no-console': 'error',
      'no-restricted-properties': ['error', { object: 'process', property: 'exit', message: 'Only src/main.ts exits; commands return an exit code.' }],
    },
  },
  {
    // Tests state what they expect; a `!` on a value the test just checked is the clearest way.
    // vitest's asymmetric matchers (expect.any, expect.stringMatching, ...) are typed `any`.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off', '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  {
    // With noUncheckedIndexedAccess every bounded index read (`buf[i]` in the DER and HTTP/2
    // parsers) is `T | undefined`; `!` there states the bounds check just made, and `as T` would
    // hide more. Any other `!` (on a field, a call, a variable) stays banned.
    files: ['src/**'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-restricted-syntax': ['error', NON_NULL_ONLY_ON_INDEX],
    },
  },
  {
    files: ['src/main.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    // The clock is injected (`opts.now ?? Date.now` at the composition point is that injection);
    // what is banned is reading the wall clock inline. devca.ts is the CLI's dev CA, not a stage:
    // it stamps certificates and CRLs with the real time.
    files: STAGES,
    ignores: ['src/pki/devca.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        NON_NULL_ONLY_ON_INDEX,
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Stages take an injected clock.' },
      ],
    },
  },
);
