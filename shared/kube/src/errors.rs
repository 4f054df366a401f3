//! What an API error means for the caller, decided by status code and error
//! kind, never by matching the error's text.

/// Whether an error may go away by itself: the server or its storage is
/// unavailable (5xx), it asks us to slow down (429), or the connection
/// failed. A 4xx validation error will fail the same way every time.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429 || status.code == 0,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        // A body cut short by a dying server fails to parse.
        kube::Error::SerdeError(_) => true,
        _ => false,
    }
}

/// Whether to retry at once, within the same attempt: a transient error that
/// came back fast. A timeout (the server's 504, or no answer in time) already
/// took long; the caller retries later instead.
pub fn retry_now(error: &kube::Error) -> bool {
    is_transient(error) && status_code(error) != Some(504) && !is_timeout(error)
}

/// Whether the request timed out on our side: an I/O error of kind
/// `TimedOut` (the client's read, write and connect timeouts) or a tokio
/// timer that elapsed, anywhere in the error's chain.
pub fn is_timeout(error: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || e.is::<tokio::time::error::Elapsed>()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The status code of an API error, if the server answered.
pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// How long the server asked the client to wait before trying again: the
/// `retryAfterSeconds` of its `Status` (429 from API priority and fairness,
/// a 5xx `ServerTimeout`), the body's form of the `Retry-After` header.
pub fn retry_after(error: &kube::Error) -> Option<std::time::Duration> {
    match error {
        kube::Error::Api(status) => status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| std::time::Duration::from_secs(u64::from(s))),
        _ => None,
    }
}

/// Whether the server answered with `code`.
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    status_code(error) == Some(code)
}

/// A short, readable form of an API error: the server's message when it sent one.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        other => format!("{other}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kube::core::Status;

    /// An API error with `code`, for the tests of this crate.
    pub(crate) fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            Status {
                code,
                ..Status::failure("x", "y")
            }
            .boxed(),
        )
    }

    #[test]
    fn server_trouble_is_transient_validation_is_not() {
        for code in [500, 502, 503, 504, 429] {
            assert!(is_transient(&api_error(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&api_error(code)), "{code}");
        }
        // a server that took its time to give up is retried later, not now
        assert!(is_transient(&api_error(504)));
        assert!(!retry_now(&api_error(504)));
        assert!(retry_now(&api_error(503)));
        assert_eq!(status_code(&api_error(422)), Some(422));
        assert!(is_status(&api_error(404), 404));
        assert_eq!(describe(&api_error(422)), "x (422)");
        assert_eq!(retry_after(&api_error(429)), None);
    }

    #[test]
    fn retry_after_comes_from_the_status_details() {
        let mut status = Status {
            code: 429,
            ..Status::failure("slow down", "TooManyRequests")
        };
        status.details = Some(kube::core::response::StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds: 3,
        });
        let e = kube::Error::Api(status.boxed());
        assert_eq!(retry_after(&e), Some(std::time::Duration::from_secs(3)));
    }

    #[test]
    fn timeouts_are_told_by_kind_not_by_text() {
        let timeout = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "read",
        )));
        assert!(is_timeout(&timeout));
        assert!(is_transient(&timeout) && !retry_now(&timeout));
        // The words alone do not make a timeout.
        let words = kube::Error::Service(Box::new(std::io::Error::other("operation timed out")));
        assert!(!is_timeout(&words));
        assert!(retry_now(&words));
    }
}
