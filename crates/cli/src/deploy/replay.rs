//! A replay HTTP client for the unit tests of how deploy reads CloudFormation's answers: each
//! request gets the next canned answer given for its action (`Action=` of the query body), and
//! the actions asked are kept for the test to read. The SDK runs as in production (signing,
//! serialisation, error parsing); only the socket is replaced, so no SDK feature changes.

use std::sync::{Arc, Mutex};

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// CloudFormation's XML namespace, as its answers carry it.
const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

#[derive(Debug, Clone, Default)]
pub(crate) struct Replay {
    /// (action, HTTP status, body), answered in order per action.
    answers: Arc<Mutex<Vec<(String, u16, String)>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Replay {
    /// Adds an answer to the next request for `action`.
    pub(crate) fn answer(self, action: &str, status: u16, body: String) -> Replay {
        self.answers.lock().unwrap().push((action.to_string(), status, body));
        self
    }

    /// Adds CloudFormation's error answer (HTTP 400) for `action`.
    pub(crate) fn error(self, action: &str, code: &str, message: &str) -> Replay {
        let body = format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>replay</RequestId></ErrorResponse>"
        );
        self.answer(action, 400, body)
    }

    /// The actions asked so far, in order.
    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    /// A CloudFormation client whose requests this replay answers (no retries: an answer is
    /// used once).
    pub(crate) fn cloudformation(&self) -> aws_sdk_cloudformation::Client {
        let config = aws_sdk_cloudformation::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDREPLAY", "replay", None, None, "replay"))
            .retry_config(aws_sdk_cloudformation::config::retry::RetryConfig::disabled())
            .http_client(self.clone())
            .build();
        aws_sdk_cloudformation::Client::from_conf(config)
    }
}

impl HttpConnector for Replay {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        let action = body.split('&').find_map(|p| p.strip_prefix("Action=")).unwrap_or("").to_string();
        self.asked.lock().unwrap().push(action.clone());
        let mut answers = self.answers.lock().unwrap();
        let (status, text) = match answers.iter().position(|(a, _, _)| *a == action) {
            Some(i) => {
                let (_, status, text) = answers.remove(i);
                (status, text)
            }
            // An action the test gave no answer for: an answer no caller takes for success.
            None => (
                400,
                format!(
                    "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>NoReplay</Code>\
                     <Message>the test gave no answer for {action}</Message></Error></ErrorResponse>"
                ),
            ),
        };
        let status = StatusCode::try_from(status).unwrap_or_else(|_| StatusCode::try_from(500).expect("500"));
        HttpConnectorFuture::ready(Ok(Response::new(status, SdkBody::from(text))))
    }
}

impl HttpClient for Replay {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}
