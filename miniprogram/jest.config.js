/** Unit, component and page tests: `npm test`. The e2e suite has its own config. */
module.exports = {
  testEnvironment: 'jsdom',
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
  testMatch: ['<rootDir>/test/**/*.test.js'],
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/e2e/'],
  snapshotSerializers: ['miniprogram-simulate/jest-snapshot-plugin'],
};
