//! The AWS account id: from the caller's identity (STS `GetCallerIdentity`), or from a Lambda
//! function ARN.

use crate::error::AwsError;
use crate::sdk::Aws;

/// Asks STS who the caller is.
pub async fn caller_account_id(aws: &Aws) -> Result<String, AwsError> {
    let client = aws_sdk_sts::Client::new(aws.config());
    let out = client.get_caller_identity().send().await.map_err(|e| AwsError::Account {
        message: AwsError::call("GetCallerIdentity", aws.region().unwrap_or("?"), e).to_string(),
    })?;
    out.account()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Account { message: "GetCallerIdentity returned no account".to_string() })
}

/// The account id inside an ARN (`arn:aws:lambda:us-east-1:123456789012:function:name`).
pub fn account_from_arn(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    is_account_id(account).then_some(account)
}

/// True for a 12-digit AWS account id.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_from_function_arn() {
        assert_eq!(account_from_arn("arn:aws:lambda:us-east-1:123456789012:function:f"), Some("123456789012"));
        assert_eq!(account_from_arn("arn:aws:lambda:us-east-1:12345:function:f"), None);
        assert_eq!(account_from_arn("nonsense"), None);
    }
}
