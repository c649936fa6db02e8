//! The one table from domain errors to gRPC status codes and google.rpc error details.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::context;
use crate::domain::Error;

/// `ErrorInfo.domain` of every error this service attaches.
pub const ERROR_DOMAIN: &str = "tenant-plane";

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let request_id = context::request_id();
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
                Status::with_error_details(Code::Aborted, message, error_info(reason, request_id))
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
            Error::Unauthenticated { reason, .. } => Status::with_error_details(
                Code::Unauthenticated,
                message,
                error_info(reason, request_id),
            ),
            Error::PermissionDenied(_) => Status::with_error_details(
                Code::PermissionDenied,
                message,
                error_info("PERMISSION_DENIED", request_id),
            ),
            Error::Unimplemented(_) => Status::unimplemented(message),
            Error::Unavailable(cause) => {
                tracing::warn!(%request_id, %cause, "catalog unavailable");
                let mut details = error_info("CATALOG_UNAVAILABLE", request_id);
                details.set_retry_info(Some(std::time::Duration::from_secs(1)));
                Status::with_error_details(
                    Code::Unavailable,
                    "the catalog database is unavailable; retry later",
                    details,
                )
            }
            Error::Internal(cause) => {
                // Logged here, where it is handled; the caller gets only the id to quote.
                tracing::error!(%request_id, %cause, "internal error");
                Status::with_error_details(
                    Code::Internal,
                    format!("internal error (request id {request_id})"),
                    error_info("INTERNAL", request_id),
                )
            }
        }
    }
}

/// An `ErrorInfo` detail in [`ERROR_DOMAIN`] with `reason` and the request id (metadata
/// `request_id`) the caller can quote.
fn error_info(reason: &str, request_id: String) -> ErrorDetails {
    ErrorDetails::with_error_info(
        reason,
        ERROR_DOMAIN,
        [("request_id".to_owned(), request_id)],
    )
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

    #[test]
    fn internal_errors_carry_a_request_id_and_never_the_cause() {
        let status = Status::from(Error::Internal(
            "error returned from database: relation \"tenants\" does not exist: SELECT * FROM tenants".into(),
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT") && !status.message().contains("tenants"));
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INTERNAL", ERROR_DOMAIN)
        );
        assert!(
            info.metadata
                .get("request_id")
                .is_some_and(|id| !id.is_empty())
        );
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
