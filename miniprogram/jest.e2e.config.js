/** End-to-end client test against a running wemint-dev: `WEMINT_DEV_URL=... npm run test:e2e`. */
module.exports = {
  testEnvironment: 'node',
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
  testMatch: ['<rootDir>/test/e2e/**/*.test.js'],
  testTimeout: 120000,
};
