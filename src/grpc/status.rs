//! The one table from domain errors to gRPC status codes and google.rpc error details.
//!
//! The request id a caller can quote is not known where an error is converted: the context
//! layer adds it to the answer's `ErrorInfo` (and to an internal error's message) when the call
//! has ended ([`quote_request_id`]).

use tonic::{Code, Status};
use tonic_types::{ErrorDetail, ErrorDetails, StatusExt};

use crate::domain::Error;

/// `ErrorInfo.domain` of every error this service attaches.
pub const ERROR_DOMAIN: &str = "tenant-plane";

/// The message of an internal error, before the request id is added to it.
const INTERNAL_MESSAGE: &str = "internal error";

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { kind, name } => Status::with_error_details(
                Code::NotFound,
                message,
                ErrorDetails::with_resource_info(kind, name, "", "not found"),
            ),
            Error::AlreadyExists { kind, name } => Status::with_error_details(
                Code::AlreadyExists,
                message,
                ErrorDetails::with_resource_info(kind, name, "", "already exists"),
            ),
            Error::FailedPrecondition { subject, message } => Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure_violation("STATE", subject, message),
            ),
            Error::HistoryConflict {
                reason,
                metadata,
                violations,
                ..
            } => {
                let mut details = ErrorDetails::with_error_info(
                    reason,
                    ERROR_DOMAIN,
                    metadata
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<std::collections::HashMap<_, _>>(),
                );
                for (subject, why) in violations {
                    details.add_precondition_failure_violation(reason, subject, why);
                }
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::MigrationFailed { .. } => Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure_violation(
                    "MIGRATION",
                    "tenant migration",
                    message,
                ),
            ),
            Error::Aborted { reason, .. } => {
                Status::with_error_details(Code::Aborted, message, error_info(reason))
            }
            Error::QuotaExhausted {
                subject,
                violations,
                retry_after,
            } => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_quota_failure_violation(subject.clone(), v.description);
                }
                if let Some(delay) = retry_after {
                    details.set_retry_info(Some(delay));
                }
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Unauthenticated { reason, .. } => {
                Status::with_error_details(Code::Unauthenticated, message, error_info(reason))
            }
            Error::PermissionDenied(_) => Status::with_error_details(
                Code::PermissionDenied,
                message,
                error_info("PERMISSION_DENIED"),
            ),
            Error::Unimplemented(_) => Status::unimplemented(message),
            Error::Unavailable(cause) => {
                // Logged in the call's span, which names its request id.
                tracing::warn!(%cause, "catalog unavailable");
                let mut details = error_info("CATALOG_UNAVAILABLE");
                details.set_retry_info(Some(std::time::Duration::from_secs(1)));
                Status::with_error_details(
                    Code::Unavailable,
                    "the catalog database is unavailable; retry later",
                    details,
                )
            }
            Error::Internal(cause) => {
                // Logged here, where it is handled, in the call's span (which names its request
                // id); the caller gets only the id to quote.
                tracing::error!(%cause, "internal error");
                Status::with_error_details(Code::Internal, INTERNAL_MESSAGE, error_info("INTERNAL"))
            }
        }
    }
}

/// An `ErrorInfo` detail in [`ERROR_DOMAIN`] with `reason`; [`quote_request_id`] adds the
/// request id (metadata `request_id`) the caller can quote.
fn error_info(reason: &str) -> ErrorDetails {
    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, [])
}

/// Adds `request_id` to the error `response` answers, if it has an `ErrorInfo` of this
/// service: as its `request_id` metadata, and to an internal error's message. The status is
/// read from the response's extensions, where tonic and [`Status::into_http`] leave it; a
/// success, or an error without such a detail, is left as it is.
pub(crate) fn quote_request_id<B>(response: &mut http::Response<B>, request_id: &str) {
    let Some(status) = response.extensions().get::<Status>() else {
        return;
    };
    if status.code() == Code::Ok {
        return;
    }
    let mut details = status.get_error_details_vec();
    let mut quoted = false;
    for detail in &mut details {
        if let ErrorDetail::ErrorInfo(info) = detail
            && info.domain == ERROR_DOMAIN
        {
            info.metadata
                .insert("request_id".to_owned(), request_id.to_owned());
            quoted = true;
        }
    }
    if !quoted {
        return;
    }
    let message = if status.code() == Code::Internal && status.message() == INTERNAL_MESSAGE {
        format!("{INTERNAL_MESSAGE} (request id {request_id})")
    } else {
        status.message().to_owned()
    };
    let quoted = Status::with_error_details_vec(status.code(), message, details);
    // A header that cannot be made (never, for these values) leaves the answer without the id.
    if quoted.add_header(response.headers_mut()).is_ok() {
        response.extensions_mut().insert(quoted);
    }
}

/// The google.rpc.Code name of `code` (`NOT_FOUND`), as logs, metrics and the audit log name
/// outcomes.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldViolation;

    /// The status `error` is answered with, as the context layer sends it for `request_id`.
    fn answered(error: Error, request_id: &str) -> Status {
        let mut response: http::Response<()> = Status::from(error).into_http();
        quote_request_id(&mut response, request_id);
        Status::from_header_map(response.headers()).expect("an error status")
    }

    #[test]
    fn internal_errors_carry_a_request_id_and_never_the_cause() {
        let status = answered(
            Error::Internal(
                "error returned from database: relation \"tenants\" does not exist: SELECT * FROM tenants".into(),
            ),
            "req-42",
        );
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT") && !status.message().contains("tenants"));
        assert_eq!(status.message(), "internal error (request id req-42)");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INTERNAL", ERROR_DOMAIN)
        );
        assert_eq!(
            info.metadata.get("request_id").map(String::as_str),
            Some("req-42")
        );
    }

    #[test]
    fn the_request_id_is_quoted_beside_the_other_details() {
        let status = answered(Error::Unavailable("connection refused".into()), "req-7");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "CATALOG_UNAVAILABLE");
        assert_eq!(info.metadata["request_id"], "req-7");
        assert!(status.get_details_retry_info().is_some());
        assert_eq!(
            status.message(),
            "the catalog database is unavailable; retry later"
        );
        // Errors without an ErrorInfo are left as they are.
        let invalid = answered(Error::invalid("tenant.slug", "bad"), "req-8");
        assert!(invalid.get_details_error_info().is_none());
        assert!(invalid.get_details_bad_request().is_some());
    }

    #[test]
    fn aborted_errors_say_why_in_error_info() {
        let status = Status::from(Error::stale_etag("acme"));
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "ETAG_MISMATCH");
        let busy = Status::from(Error::Aborted {
            reason: "REQUEST_IN_PROGRESS",
            message: "running".into(),
        });
        assert_eq!(
            busy.get_details_error_info().expect("ErrorInfo").reason,
            "REQUEST_IN_PROGRESS"
        );
    }

    #[test]
    fn history_conflicts_carry_their_reason_metadata_and_each_migration() {
        let status = answered(
            Error::HistoryConflict {
                reason: "MIGRATION_CHANGED",
                message: "changed".into(),
                metadata: vec![
                    ("version", "0002_b".into()),
                    ("registered_checksum", "aa".into()),
                    ("pushed_checksum", "bb".into()),
                ],
                violations: vec![("components/billing/migrations/0002_b".into(), "why".into())],
            },
            "req-9",
        );
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "MIGRATION_CHANGED");
        assert_eq!(info.metadata["registered_checksum"], "aa");
        assert_eq!(info.metadata["pushed_checksum"], "bb");
        assert_eq!(info.metadata["request_id"], "req-9");
        let failure = status
            .get_details_precondition_failure()
            .expect("PreconditionFailure");
        assert_eq!(
            failure.violations[0].subject,
            "components/billing/migrations/0002_b"
        );
    }

    #[test]
    fn unavailable_asks_to_retry_and_hides_the_cause() {
        let status = Status::from(Error::Unavailable(
            "connection refused to 10.0.0.5:5432".into(),
        ));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.5"));
        assert!(status.get_details_retry_info().is_some());
    }

    #[test]
    fn invalid_arguments_name_every_field() {
        let status = Status::from(Error::InvalidArgument(vec![
            FieldViolation::new("tenant.slug", "bad"),
            FieldViolation::new("tenant.plan", "unknown"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<_> = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["tenant.slug", "tenant.plan"]);
    }

    #[test]
    fn each_domain_error_has_its_code() {
        let cases = [
            (Error::tenant_not_found("tenants/x"), Code::NotFound),
            (
                Error::AlreadyExists {
                    kind: "tenant",
                    name: "x".into(),
                },
                Code::AlreadyExists,
            ),
            (
                Error::FailedPrecondition {
                    subject: "tenants/x".into(),
                    message: "m".into(),
                },
                Code::FailedPrecondition,
            ),
            (Error::stale_etag("acme"), Code::Aborted),
            (Error::Unimplemented("X".into()), Code::Unimplemented),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }
}
