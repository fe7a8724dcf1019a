//! One envelope sealed under AWS KMS (moto) + Google Cloud KMS (fake) + an HSM (SoftHSM2) + a
//! local key opens with each KEK alone.
#![allow(clippy::unwrap_used)] // tests

mod support;

use std::sync::Arc;

use envelope::aws::AwsKmsBuilder;
use envelope::gcp::GcpKmsBuilder;
use envelope::local::LocalKek;
use envelope::{KeyEncryptionKey, Keyring};
use support::gcp_fake::{self, GcpFake};
use support::{hsm, moto};

#[test]
fn four_kinds_of_kek_in_a_fresh_softhsm2_token() {
    if hsm::inside() {
        return;
    }
    // Fail or skip here, in the parent, if moto is missing (the child would only skip).
    let Some(server) = moto::shared() else {
        return;
    };
    hsm::run_in_fresh_token(
        "in_token::",
        1,
        &[(moto::ENDPOINT_ENV, server.endpoint.as_str())],
    );
}

mod in_token {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sealed_under_aws_gcp_hsm_and_local_opens_with_each_alone() {
        let Some(hsm_kek) = hsm::kek() else { return };
        let Some(server) = moto::shared() else {
            panic!("moto is needed in the child too")
        };
        let counter = moto::RequestCounter::default();
        let client = moto::client(&server.endpoint, &counter);
        let arn = moto::create_key(&client).await;
        let aws = AwsKmsBuilder::new()
            .with_key_id(arn)
            .with_client(client)
            .build()
            .await
            .unwrap();
        let fake = GcpFake::start().await;
        let gcp = GcpKmsBuilder::new()
            .with_key_name(gcp_fake::KEY)
            .with_client(gcp_fake::client(&fake.endpoint).await)
            .build()
            .await
            .unwrap();
        let keks: Vec<Arc<dyn KeyEncryptionKey>> = vec![
            Arc::new(aws),
            Arc::new(gcp),
            Arc::new(hsm_kek),
            Arc::new(LocalKek::generate().unwrap()),
        ];
        let all: Keyring = keks.iter().cloned().collect();
        let ctx = support::share_context("cl_1", "bsp_1", "ED25519");
        let sealed = envelope::seal(&all, &ctx, b"one share, four keys")
            .await
            .unwrap();
        let info = envelope::inspect(&sealed).unwrap();
        let providers: Vec<String> = info
            .wrapped_keys
            .iter()
            .map(|k| k.provider().to_owned())
            .collect();
        assert_eq!(providers, ["aws-kms", "gcp-kms", "pkcs11", "local"]);
        for kek in &keks {
            let opened = envelope::open(&Keyring::from(Arc::clone(kek)), &ctx, &sealed)
                .await
                .unwrap();
            assert_eq!(opened.expose_secret(), b"one share, four keys");
        }
    }
}
