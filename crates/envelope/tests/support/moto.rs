//! AWS KMS on moto: KMS clients with a request counter, and keys, on top of the moto server of
//! `test_services::moto` (one per test binary, on loopback; child runs of a test binary share
//! their parent's through `ENDPOINT_ENV`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_kms::config::interceptors::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_kms::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
#[allow(unused_imports, reason = "each test binary uses a subset")]
pub use test_services::moto::{ENDPOINT_ENV, shared};

/// Counts the HTTP requests a client sends (every attempt), by KMS operation.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Counts>);

#[derive(Debug, Default)]
pub struct Counts {
    pub generate_data_key: AtomicUsize,
    pub encrypt: AtomicUsize,
    pub decrypt: AtomicUsize,
    pub re_encrypt: AtomicUsize,
    pub other: AtomicUsize,
}

impl RequestCounter {
    /// (GenerateDataKey, Encrypt, Decrypt, ReEncrypt, other) since the last call.
    pub fn take(&self) -> (usize, usize, usize, usize, usize) {
        let c = &self.0;
        (
            c.generate_data_key.swap(0, Ordering::SeqCst),
            c.encrypt.swap(0, Ordering::SeqCst),
            c.decrypt.swap(0, Ordering::SeqCst),
            c.re_encrypt.swap(0, Ordering::SeqCst),
            c.other.swap(0, Ordering::SeqCst),
        )
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_owned();
        let c = &self.0;
        let counter = match target.rsplit('.').next().unwrap_or_default() {
            "GenerateDataKey" => &c.generate_data_key,
            "Encrypt" => &c.encrypt,
            "Decrypt" => &c.decrypt,
            "ReEncrypt" => &c.re_encrypt,
            _ => &c.other,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A KMS client for `endpoint` with test credentials, counting its requests.
pub fn client(endpoint: &str, counter: &RequestCounter) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .interceptor(counter.clone())
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// moto's default account, where [`client`]'s keys live.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Puts every request of a client in another moto account (moto's `x-moto-account-id`).
#[derive(Debug, Clone)]
struct InAccount(&'static str);

impl Intercept for InAccount {
    fn name(&self) -> &'static str {
        "InAccount"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0);
        Ok(())
    }
}

/// A KMS client like [`client`], in moto account `account` (12 digits).
pub fn client_in_account(
    endpoint: &str,
    counter: &RequestCounter,
    account: &'static str,
) -> aws_sdk_kms::Client {
    let config = client(endpoint, counter)
        .config()
        .to_builder()
        .interceptor(InAccount(account))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// A fresh symmetric key on the server; its ARN.
pub async fn create_key(client: &aws_sdk_kms::Client) -> String {
    client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}
