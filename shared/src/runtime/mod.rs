//! Deployment adapters: SCF custom runtime, HTTP function, AWS Lambda (feature `lambda`).
