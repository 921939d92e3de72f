//! Catching a panic inside a handler future, so one bad request cannot take the instance down.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::telemetry::panic_message;

/// Polls the inner future inside `catch_unwind`; a panic ends it with the panic message.
///
/// Unwind safety: after a panic the inner future is never polled again, and handler state
/// shared through `Arc` is expected to stay consistent (no lock is held across a panic point
/// in our handlers; a poisoned `std::sync::Mutex` would surface as an error, not UB).
pub(crate) struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panic_becomes_error_and_values_pass_through() {
        assert_eq!(CatchUnwind::new(async { 7 }).await, Ok(7));
        let out = CatchUnwind::new(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 1);
        })
        .await;
        assert_eq!(out, Err::<(), _>("boom 1".to_owned()));
    }
}
