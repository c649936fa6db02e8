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
            Error::Aborted { .. } => Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info(
                    "ETAG_MISMATCH",
                    ERROR_DOMAIN,
                    [("request_id".to_owned(), request_id)],
                ),
            ),
            Error::Unimplemented(_) => Status::unimplemented(message),
            Error::Unavailable(cause) => {
                tracing::warn!(%request_id, %cause, "catalog unavailable");
                let mut details = ErrorDetails::with_error_info(
                    "CATALOG_UNAVAILABLE",
                    ERROR_DOMAIN,
                    [("request_id".to_owned(), request_id)],
                );
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
                    ErrorDetails::with_error_info(
                        "INTERNAL",
                        ERROR_DOMAIN,
                        [("request_id".to_owned(), request_id)],
                    ),
                )
            }
        }
    }
}
