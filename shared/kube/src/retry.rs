//! One API call, retried the way both programs want: at once while it
//! fails fast with a transient error, with jitter, honouring the server's
//! `Retry-After`, never once the caller is stopping.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable as _};

use crate::errors::{describe, retry_after, retry_now};

/// The longest `Retry-After` waited out inside one call; a server that
/// asks for longer is left alone, and the loop retries after that wait.
const MAX_INNER_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An attempt that failed after this long is not retried at once: the
/// server already spent that long trying (its storage is gone, say).
const SLOW_FAILURE: Duration = Duration::from_secs(5);

/// Run one API call with [`backoff`]: retried at once while it fails fast
/// with a transient error ([`retry_now`]); not when an attempt was slow to
/// fail, nor once `stopping` is set (SIGTERM). A `Retry-After` from the
/// server stretches the wait ([`MAX_INNER_RETRY_AFTER`] at most).
pub async fn call<T, F, Fut>(mut f: F, stopping: Option<&AtomicBool>) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let slow = AtomicBool::new(false);
    let attempt = || {
        let started = tokio::time::Instant::now();
        let fut = f();
        let slow = &slow;
        async move {
            let result = fut.await;
            slow.store(
                result.is_err() && started.elapsed() > SLOW_FAILURE,
                Ordering::SeqCst,
            );
            result
        }
    };
    attempt
        .retry(backoff())
        .when(|e| {
            retry_now(e)
                && !slow.load(Ordering::SeqCst)
                && !stopping.is_some_and(|s| s.load(Ordering::SeqCst))
        })
        .adjust(|e, next| {
            let next = next?;
            match retry_after(e) {
                Some(asked) if asked > MAX_INNER_RETRY_AFTER => None,
                Some(asked) => Some(asked.max(next)),
                None => Some(next),
            }
        })
        .notify(
            |e, after| tracing::debug!(error = %describe(e), ?after, "API call failed; retrying"),
        )
        .await
}

/// Exponential backoff with jitter for one API call: 200 ms, doubling, up
/// to 3 s apart, 5 retries (about 6 s of waiting in all).
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_factor(2.0)
        .with_max_times(5)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::tests::api_error;

    #[tokio::test(start_paused = true)]
    async fn calls_retry_fast_transient_failures_only() {
        use std::sync::atomic::AtomicUsize;
        let n = AtomicUsize::new(0);
        let r: Result<(), _> = call(
            || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api_error(503))
            },
            None,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 6, "1 + 5 retries");

        let n = AtomicUsize::new(0);
        let r = call(
            || async {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(api_error(429)),
                    _ => Ok(7),
                }
            },
            None,
        )
        .await;
        assert_eq!(r.unwrap(), 7);

        // validation errors, and failures that took long, are not retried now
        for (code, delay) in [(422, 0), (500, 10)] {
            let n = AtomicUsize::new(0);
            let r: Result<(), _> = call(
                || async {
                    n.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(delay)).await;
                    Err(api_error(code))
                },
                None,
            )
            .await;
            assert!(r.is_err());
            assert_eq!(n.load(Ordering::SeqCst), 1, "{code}");
        }

        // nor once the agent is stopping
        let n = AtomicUsize::new(0);
        let stopping = AtomicBool::new(true);
        let _: Result<(), _> = call(
            || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api_error(503))
            },
            Some(&stopping),
        )
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
