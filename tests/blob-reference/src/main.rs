//! Runs the shared conformance cases against the official `BlobCheckpointStore` on Azurite and
//! writes the transcript; with `--bench`, times the Blob store against ours instead.
//!
//! ```text
//! blob-reference ACCOUNT_URL OUT_FILE
//! blob-reference --bench ACCOUNT_URL [--partitions N] [--rounds R]
//! blob-reference --create-container | --list | --write …   (see [`interop`])
//! ```
//! `ACCOUNT_URL` is Azurite's blob endpoint with the account, for example
//! `http://127.0.0.1:10000/devstoreaccount1`. A new container is made for the run (for each
//! round and store with `--bench`). Azurite must run with `--skipApiVersionCheck`:
//! azure_storage_blob 1.1 sends a newer API version than Azurite 3.35 knows. `.ci/with-azurite`
//! starts one and runs a command against it; see [`bench`] for the timing mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
#[path = "../../conformance/cases.rs"]
mod cases;
mod interop;

use azure_core::http::Url;
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::BlobContainerClient;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Azurite's well-known development account; its key is public and documented.
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An account SAS, signed here because azure_storage_blob 1.x has no shared-key auth.
///
/// For `sv` 2020-12-06 and later the string to sign is
/// `account \n sp \n ss \n srt \n st \n se \n sip \n spr \n sv \n ses \n` (ses: the encryption
/// scope, empty here).
fn account_sas(expiry: &str) -> String {
    let (sv, sp, ss, srt, spr) = ("2020-12-06", "rwdlacup", "b", "sco", "https,http");
    let string_to_sign = format!("{ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n{spr}\n{sv}\n\n");
    let key = B64.decode(ACCOUNT_KEY).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", sv)
        .append_pair("ss", ss)
        .append_pair("srt", srt)
        .append_pair("sp", sp)
        .append_pair("se", expiry)
        .append_pair("spr", spr)
        .append_pair("sig", &sig)
        .finish()
}

/// The URL of container `name` in the account at `account_url`, with an account SAS.
fn container_url(account_url: &str, name: &str) -> Result<Url, url::ParseError> {
    let mut url = Url::parse(&format!("{}/{name}", account_url.trim_end_matches('/')))?;
    url.set_query(Some(&account_sas("2099-01-01T00:00:00Z")));
    Ok(url)
}

/// Milliseconds since the Unix epoch, to name new containers.
fn stamp_millis() -> Result<u128, std::time::SystemTimeError> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bench") {
        return bench::main(&args[2..]).await;
    }
    if matches!(
        args.get(1).map(String::as_str),
        Some("--create-container" | "--list" | "--write")
    ) {
        return interop::main(&args[1..]).await;
    }
    let [_, account_url, out] = args.as_slice() else {
        eprintln!("usage: blob-reference ACCOUNT_URL OUT_FILE");
        eprintln!("       blob-reference --bench ACCOUNT_URL [--partitions N] [--rounds R]");
        std::process::exit(2);
    };
    let url = container_url(account_url, &format!("conformance-{}", stamp_millis()?))?;

    BlobContainerClient::new(url.clone(), None, None)?
        .create(None)
        .await?;
    let store = BlobCheckpointStore::new(BlobContainerClient::new(url, None, None)?);

    let lines = cases::run_all(&*store).await;
    let mut text = String::from(
        "# The shared conformance cases (tests/conformance/cases.rs) run against\n\
         # azure_messaging_eventhubs_checkpointstore_blob 0.9.0 on Azurite.\n\
         # Written by tests/blob-reference; .ci/run regenerates it and fails if it changed.\n",
    );
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(out, text)?;
    println!("blob-reference: {} lines written to {out}", lines.len());
    Ok(())
}
