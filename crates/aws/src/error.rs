//! The one error type of the AWS layer. Messages are single lines that say what failed, where,
//! and what the operator can do about it.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AwsError {
    #[error(
        "ebs-snapper is not deployed in {region}: table {table} does not exist \
         (run `ebs-snapper deploy`, or pass -t with the region it was deployed to)"
    )]
    NotDeployed { table: String, region: String },

    /// A member account whose role could not be assumed: that account is not worked.
    #[error(
        "account {account} could not be reached through role {role} ({message}); install the member role there \
         (`ebs-snapper deploy --member DEPLOYMENT_ACCOUNT`, docs/reference/member-accounts.md)"
    )]
    Member { account: String, role: String, message: String },

    /// A vault (SPEC §16) whose role could not be assumed: from credentials other than the
    /// deployment's function roles, always (the role trusts only them).
    #[error(
        "the vault {account} could not be reached through role {role} ({message}); the role trusts only the \
         deployment's function roles: install it in the vault with `ebs-snapper deploy --vault DEPLOYMENT_ACCOUNT` \
         (docs/reference/configuration.md#vault-account)"
    )]
    Vault { account: String, role: String, message: String },

    #[error("could not determine the AWS account id ({message}); pass -a ACCOUNT or configure AWS credentials")]
    Account { message: String },

    /// A mutation whose answer was lost, and whose effect could not be looked up either: it is
    /// not tried again (it may have been done).
    #[error("{first}; whether it was done could not be verified ({verify}), so it was not tried again")]
    Unverified { operation: &'static str, first: Box<AwsError>, verify: Box<AwsError> },

    #[error("{operation} in {region} failed: {message}")]
    Call {
        operation: &'static str,
        region: String,
        /// The AWS error code, when AWS answered with one.
        code: Option<String>,
        message: String,
        /// The SDK's error, kept for whoever walks the chain (the message above is its one-line
        /// summary, so the chain is not printed twice).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AwsError {
    /// The AWS error code behind this error, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            AwsError::Unverified { first, .. } => first.code(),
            _ => None,
        }
    }

    /// Builds a `Call` error from an SDK error: `Code: message` when AWS answered, otherwise the
    /// full error chain on one line (connection refused, timeout, missing credentials...).
    pub fn call<E>(operation: &'static str, region: &str, err: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_string);
        let message = match (&code, err.message(), &err) {
            (Some(code), Some(msg), _) => format!("{code}: {msg}"),
            (Some(code), None, _) => code.clone(),
            // An answer that is not an AWS error document (a proxy's or server's error page).
            (None, _, SdkError::ServiceError(e)) => {
                format!("HTTP {} without an AWS error code", e.raw().status().as_u16())
            }
            _ => one_line(&DisplayErrorContext(&err).to_string()),
        };
        AwsError::Call { operation, region: region.to_string(), code, message, source: Box::new(err) }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::create_snapshot::CreateSnapshotError;

    #[test]
    fn a_call_error_is_one_line_and_keeps_the_sdk_error_as_its_source() {
        let sdk: SdkError<CreateSnapshotError, HttpResponse> =
            SdkError::timeout_error("the operation timed out\nafter 30 s");
        let e = AwsError::call("CreateSnapshot", "eu-west-1", sdk);
        let text = e.to_string();
        assert!(text.starts_with("CreateSnapshot in eu-west-1 failed: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        let source = std::error::Error::source(&e).expect("the SDK error is kept");
        assert!(source.downcast_ref::<SdkError<CreateSnapshotError, HttpResponse>>().is_some());
    }
}
