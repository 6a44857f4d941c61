//! Asynchronous invocation of a worker function (`InvocationType=Event`), one per region.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use tracing::info;

use crate::error::AwsError;
use crate::sdk::Aws;

pub struct Dispatcher {
    client: aws_sdk_lambda::Client,
    region: String,
}

impl Dispatcher {
    /// A dispatcher invoking functions in `region` (the install region).
    pub fn new(aws: &Aws, region: &str) -> Dispatcher {
        Dispatcher { client: aws_sdk_lambda::Client::new(&aws.in_region(region)), region: region.to_string() }
    }

    /// Invokes `function` asynchronously with a JSON payload.
    pub async fn invoke(&self, function: &str, payload: &serde_json::Value) -> Result<(), AwsError> {
        let body = serde_json::to_vec(payload).expect("a JSON value serialises");
        self.client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(body))
            .send()
            .await
            .map_err(|e| AwsError::call("Invoke", &self.region, e))?;
        info!(function, payload = %payload, "invoked worker");
        Ok(())
    }
}
