//! Test support for end-to-end tests: the SCF runtime emulator and stand-ins.
