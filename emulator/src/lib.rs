//! The local suite's building blocks. [`scf`]: an SCF custom runtime API emulator that runs a
//! real function binary, shared by the end-to-end tests, `scripts/bench.sh` and `wemint-dev`.

pub mod scf;
