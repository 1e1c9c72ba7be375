//! Runs a task's future so that a panic inside it becomes a value instead of unwinding through
//! the worker: a panicking job is a failed attempt, never a dead worker.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::registry::HandlerFuture;

/// A handler's future whose panics are caught; once it panicked it is not polled again.
pub(crate) struct CatchPanic {
    inner: HandlerFuture,
}

impl CatchPanic {
    pub(crate) fn new(inner: HandlerFuture) -> CatchPanic {
        CatchPanic { inner }
    }
}

impl Future for CatchPanic {
    type Output = Result<Result<String, String>, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.inner;
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(outcome)) => Poll::Ready(Ok(outcome)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The message a panic carried, when it was a string.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
