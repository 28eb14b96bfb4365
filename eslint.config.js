// typescript-eslint with type information: its strict, type-checked rules, plus the project's
// bans (no `any`, `import type`, no console, `process.exit` only in main.ts, no wall clock in
// the request stages, where the clock is injected).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      'no-console': 'error',
      'no-restricted-properties': ['error', { object: 'process', property: 'exit', message: 'Only src/main.ts exits; commands return an exit code.' }],
    },
  },
  {
    // Tests state what they expect; a `!` on a value the test just checked is the clearest way.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
  {
    files: ['src/main.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    files: STAGES,
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'exit', message: 'Only src/main.ts exits; commands return an exit code.' },
        { object: 'Date', property: 'now', message: 'Stages take an injected clock.' },
      ],
    },
  },
);
