//! Logs as JSON lines on stdout (SCF collects stdout), one span per invocation.
