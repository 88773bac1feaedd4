//! Feature `blob` against Azurite and the official stores: exporting to a container the
//! official Rust (0.9) and Python (1.2.0) Blob stores list, importing what they wrote, the
//! round trip, conflicts, reruns, and EventProcessorHost lease containers.
//!
//! Run by `.ci/blob.sh` (`cargo test --all-features --test it blob_move`), which starts Azurite and sets `EHCS_BLOB_ACCOUNT_URL`, `BLOB_REFERENCE`
//! (the tests/blob-reference binary), `BLOB_PYTHON` (a venv's python with the official Python
//! store) and `EHCS_REQUIRE_AZURITE=1`. Without `EHCS_BLOB_ACCOUNT_URL` (a plain `cargo test`)
//! every test returns at once, unless `EHCS_REQUIRE_AZURITE` is set, when it fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventhubs_checkpointstore_sqlite::migrate::blob::{
    apply_export, plan_export, read_container, read_eph_container, BlobAction, BlobContainer,
    ExportOptions, ExportPlan, Scope,
};
use eventhubs_checkpointstore_sqlite::migrate::eph::{read_eph_leases, EphLease, EphLeaseFile};
use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{Checkpoint, Ownership, SqliteCheckpointStore};
use serde_json::Value;

const NS: &str = "myns.servicebus.windows.net";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn no_progress(_: usize, _: usize) {}

/// Azurite's account URL, or `None` to skip (a plain `cargo test`).
fn azurite() -> Option<String> {
    match std::env::var("EHCS_BLOB_ACCOUNT_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("EHCS_REQUIRE_AZURITE").is_some() => {
            panic!("EHCS_REQUIRE_AZURITE is set but EHCS_BLOB_ACCOUNT_URL is not")
        }
        Err(_) => {
            eprintln!("skipped: no EHCS_BLOB_ACCOUNT_URL (.ci/blob.sh runs these tests)");
            None
        }
    }
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set (see .ci/blob.sh)"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A new container, made by the official Rust client; its SAS URL.
fn new_container(account_url: &str, what: &str) -> String {
    let name = format!(
        "{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    run(Command::new(tool("BLOB_REFERENCE")).args(["--create-container", account_url, &name]))
        .trim()
        .to_owned()
}

fn container_name(sas_url: &str) -> String {
    let path = sas_url.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

fn connection_string(account_url: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
         BlobEndpoint={account_url};"
    )
}

/// What the official Rust Blob store 0.9 lists for the names exactly as given.
fn rust_lists(sas_url: &str, hub: &str, group: &str) -> Value {
    let out = run(Command::new(tool("BLOB_REFERENCE")).args(["--list", sas_url, NS, hub, group]));
    serde_json::from_str(&out).unwrap()
}

/// What the official Python Blob store 1.2.0 lists.
fn python(account_url: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blob-python/store.py");
    let out = run(Command::new(tool("BLOB_PYTHON"))
        .arg(script)
        .args(args)
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            connection_string(account_url),
        ));
    if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).unwrap()
    }
}

fn checkpoint(
    hub: &str,
    group: &str,
    p: usize,
    offset: Option<String>,
    seq: Option<i64>,
) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NS.into(),
        event_hub_name: hub.into(),
        consumer_group: group.into(),
        partition_id: p.to_string(),
        offset,
        sequence_number: seq,
    }
}

/// A store file in `dir` with `n` checkpoints and claims in (hub, group).
fn store_with(dir: &Path, hub: &str, group: &str, n: usize) -> SqliteCheckpointStore {
    let store = SqliteCheckpointStore::open(dir.join("store.db")).unwrap();
    let claims: Vec<Ownership> = (0..n)
        .map(|p| Ownership {
            fully_qualified_namespace: NS.into(),
            event_hub_name: hub.into(),
            consumer_group: group.into(),
            partition_id: p.to_string(),
            owner_id: Some(format!("owner-{}", p % 3)),
            ..Ownership::default()
        })
        .collect();
    assert_eq!(store.blocking_claim_ownership(&claims).unwrap().len(), n);
    for p in 0..n {
        store
            .blocking_update_checkpoint(&checkpoint(
                hub,
                group,
                p,
                Some((1_000 + p * 111).to_string()),
                Some(40 + p as i64),
            ))
            .unwrap();
    }
    store
}

/// The listing shape of the reference runners for our store's rows.
fn our_listing(store: &SqliteCheckpointStore, hub: &str, group: &str, etags: bool) -> Value {
    let mut cps = store.blocking_list_checkpoints(NS, hub, group).unwrap();
    cps.sort_by(|a, b| a.partition_id.cmp(&b.partition_id));
    let mut owns = store.blocking_list_ownerships(NS, hub, group).unwrap();
    owns.sort_by(|a, b| a.partition_id.cmp(&b.partition_id));
    serde_json::json!({
        "checkpoints": cps.iter().map(|c| serde_json::json!({
            "partition_id": c.partition_id, "offset": c.offset, "sequence_number": c.sequence_number,
        })).collect::<Vec<_>>(),
        "ownerships": owns.iter().map(|o| {
            let mut v = serde_json::json!({"partition_id": o.partition_id, "owner_id": o.owner_id});
            if etags {
                v["etag"] = serde_json::json!(o.etag);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

fn without_etags(mut v: Value) -> Value {
    for o in v["ownerships"].as_array_mut().unwrap() {
        o.as_object_mut().unwrap().remove("etag");
    }
    v
}

async fn export_to(
    store: &SqliteCheckpointStore,
    container: &BlobContainer,
    options: &ExportOptions,
) -> ExportPlan {
    let plan = plan_export(
        container,
        &store.blocking_export().unwrap(),
        options,
        &no_progress,
    )
    .await
    .unwrap();
    let report = apply_export(container, &plan, &no_progress).await.unwrap();
    assert!(report.conflicts.is_empty(), "{report:?}");
    plan
}

fn scope(hub: &str, group: &str) -> Scope {
    Scope {
        namespace: None,
        event_hub: Some(hub.into()),
        consumer_group: Some(group.into()),
    }
}

/// Export, then the official Rust store (names as its processor spells them) and the official
/// Python store (any spelling; it lowercases) list exactly what was exported. Also measures the
/// spelling: the Rust store does not find the lowercase blobs under `$Default`.
#[tokio::test]
async fn official_stores_list_what_we_exported() {
    let Some(account) = azurite() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "Telemetry", "$Default", 5);
    let ours = our_listing(&store, "Telemetry", "$Default", false);

    // As the Rust processor spells them: both spellings are written.
    let url = new_container(&account, "spelled");
    let container = BlobContainer::from_url(&url, None).unwrap();
    let options = ExportOptions {
        scope: scope("Telemetry", "$Default"),
        ownership: true,
        overwrite: false,
    };
    let plan = export_to(&store, &container, &options).await;
    assert_eq!(
        plan.blobs.len(),
        20,
        "5 checkpoints + 5 ownerships, two spellings each"
    );
    assert!(plan
        .blobs
        .iter()
        .any(|b| b.blob == format!("{NS}/telemetry/$default/checkpoint/0")));
    assert!(plan
        .blobs
        .iter()
        .any(|b| b.blob == format!("{NS}/Telemetry/$Default/checkpoint/0")));
    assert_eq!(
        without_etags(rust_lists(&url, "Telemetry", "$Default")),
        ours
    );
    assert_eq!(
        without_etags(rust_lists(&url, "telemetry", "$default")),
        ours
    );
    let name = container_name(&url);
    let py = python(&account, &["list", &name, NS, "Telemetry", "$Default"]);
    assert_eq!(without_etags(py), ours);

    // Without a scope only the lowercase spelling is written: Python (and .NET, JS) find it,
    // the Rust store 0.9 asked for `$Default` does not.
    let url = new_container(&account, "lower");
    let container =
        BlobContainer::from_connection_string(&connection_string(&account), &container_name(&url))
            .unwrap();
    let options = ExportOptions {
        ownership: true,
        ..ExportOptions::default()
    };
    export_to(&store, &container, &options).await;
    let rust = rust_lists(&url, "Telemetry", "$Default");
    assert_eq!(rust["checkpoints"].as_array().unwrap().len(), 0, "{rust}");
    assert_eq!(
        without_etags(rust_lists(&url, "telemetry", "$default")),
        ours
    );
    let py = python(
        &account,
        &["list", &container_name(&url), NS, "Telemetry", "$Default"],
    );
    assert_eq!(without_etags(py), ours);
}

/// The official Rust and Python stores write checkpoints and claims; `read_container` +
/// import gives a store that lists them identically (etags included).
#[tokio::test]
async fn import_reads_what_the_official_stores_wrote() {
    let Some(account) = azurite() else { return };
    let url = new_container(&account, "written");
    let theirs_rust: Value = serde_json::from_str(&run(Command::new(tool("BLOB_REFERENCE"))
        .args(["--write", &url, NS, "Orders", "$Default", "6", "rust-host"])))
    .unwrap();
    let theirs_python = python(
        &account,
        &[
            "write",
            &container_name(&url),
            NS,
            "Orders",
            "py-group",
            "4",
            "py-host",
        ],
    );
    assert_eq!(theirs_python["checkpoints"].as_array().unwrap().len(), 4);

    let container = BlobContainer::from_url(&url, None).unwrap();
    let read = read_container(&container, &Scope::default(), true, &no_progress)
        .await
        .unwrap();
    assert_eq!(read.export.checkpoints.len(), 10);
    assert_eq!(read.export.ownerships.len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteCheckpointStore::open(dir.path().join("new.db")).unwrap();
    let plan = store.blocking_plan_import(&read.export).unwrap();
    assert_eq!((plan.new_checkpoints, plan.new_ownerships), (10, 10));
    store
        .blocking_import(&read.export, OnConflict::Refuse)
        .unwrap();
    assert_eq!(our_listing(&store, "Orders", "$Default", true), theirs_rust);
    assert_eq!(
        our_listing(&store, "Orders", "py-group", true),
        theirs_python
    );

    // Scoped: only the Python group.
    let read = read_container(
        &container,
        &Scope {
            consumer_group: Some("PY-GROUP".into()),
            ..Scope::default()
        },
        false,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(read.export.checkpoints.len(), 4);
    assert!(read.export.ownerships.is_empty());

    // A rerun of the import converges: everything is the same.
    let read = read_container(&container, &Scope::default(), true, &no_progress)
        .await
        .unwrap();
    let plan = store.blocking_plan_import(&read.export).unwrap();
    assert_eq!((plan.same_checkpoints, plan.same_ownerships), (10, 10));
    assert!(plan.conflicts.is_empty());
}

/// Store → Blob → new store: the JSON export is identical except the fields Blob cannot carry.
#[tokio::test]
async fn round_trip_keeps_everything_but_the_named_fields() {
    let Some(account) = azurite() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "hub-a", "$Default", 12);
    // Another group, a released partition, a legacy placeholder and a sequence number only.
    let claims: Vec<Ownership> = (0..2)
        .map(|p| Ownership {
            fully_qualified_namespace: NS.into(),
            event_hub_name: "hub-b".into(),
            consumer_group: "Readers".into(),
            partition_id: p.to_string(),
            owner_id: Some("x".into()),
            ..Ownership::default()
        })
        .collect();
    let claimed = store.blocking_claim_ownership(&claims).unwrap();
    let mut release = claimed[1].clone();
    release.owner_id = None;
    store.blocking_claim_ownership(&[release]).unwrap();
    store
        .blocking_update_checkpoint(&checkpoint("hub-b", "Readers", 0, None, Some(77)))
        .unwrap();
    store
        .blocking_update_checkpoint(&checkpoint(
            "hub-b",
            "Readers",
            1,
            Some("-1".into()),
            Some(-1),
        ))
        .unwrap();
    let leases = [EphLease::parse(
        br#"{"partitionId":"5","sequenceNumber":0,"epoch":-1,"offset":"12"}"#,
        None,
    )
    .unwrap()];
    store
        .blocking_import_eph(NS, "hub-c", "g", &leases, OnConflict::Refuse)
        .unwrap();

    let url = new_container(&account, "roundtrip");
    let container = BlobContainer::from_url(&url, None).unwrap();
    let options = ExportOptions {
        ownership: true,
        ..ExportOptions::default()
    };
    let before = store.blocking_export().unwrap();
    export_to(&store, &container, &options).await;
    let read = read_container(&container, &Scope::default(), true, &no_progress)
        .await
        .unwrap();
    let copy = SqliteCheckpointStore::open(dir.path().join("copy.db")).unwrap();
    copy.blocking_import(&read.export, OnConflict::Refuse)
        .unwrap();
    let after = copy.blocking_export().unwrap();

    // The fields that cannot carry over: an ownership's etag and last-modified time (Blob
    // makes its own), its epoch (Blob has none) and its legacy event_processor_context.
    fn strip(mut e: StoreExport) -> StoreExport {
        for o in &mut e.ownerships {
            o.etag = String::new();
            o.last_modified = time::OffsetDateTime::UNIX_EPOCH;
            o.epoch = 0;
            o.event_processor_context = None;
        }
        e
    }
    assert_eq!(strip(after.clone()), strip(before.clone()));
    assert_ne!(after.ownerships[0].etag, before.ownerships[0].etag);
    assert_eq!(after.checkpoints.len(), 12 + 2 + 1);
}

/// A blob changed between plan and apply is reported and left as it is, with and without
/// overwrite; a blob that differs is not replaced without overwrite.
#[tokio::test]
async fn conflicts_are_reported_and_left() {
    let Some(account) = azurite() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "hub", "$default", 4);
    let other_dir = tempfile::tempdir().unwrap();
    let other = SqliteCheckpointStore::open(other_dir.path().join("other.db")).unwrap();
    other
        .blocking_update_checkpoint(&checkpoint(
            "hub",
            "$default",
            0,
            Some("999999".into()),
            Some(9),
        ))
        .unwrap();
    let url = new_container(&account, "conflict");
    let container = BlobContainer::from_url(&url, None).unwrap();
    let options = ExportOptions::default();

    // Created by someone else between plan and apply.
    let plan = plan_export(
        &container,
        &store.blocking_export().unwrap(),
        &options,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(plan.counts(), (4, 0, 0, 0));
    export_to(&other, &container, &options).await;
    let report = apply_export(&container, &plan, &no_progress).await.unwrap();
    assert_eq!(report.created, 3);
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert_eq!(
        report.conflicts[0].blob,
        format!("{NS}/hub/$default/checkpoint/0")
    );
    let rust = rust_lists(&url, "hub", "$default");
    assert_eq!(rust["checkpoints"][0]["offset"], "999999", "left as it was");

    // Differs, no overwrite: a conflict in the plan, nothing written.
    let plan = plan_export(
        &container,
        &store.blocking_export().unwrap(),
        &options,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(plan.counts(), (0, 3, 0, 1));
    assert!(matches!(plan.blobs[0].action, BlobAction::Conflict { .. }));
    let report = apply_export(&container, &plan, &no_progress).await.unwrap();
    assert_eq!((report.same, report.conflicts.len()), (3, 1));
    assert_eq!(
        rust_lists(&url, "hub", "$default")["checkpoints"][0]["offset"],
        "999999"
    );

    // Overwrite, but the blob changes again after the plan: If-Match fails, left as it is.
    let overwrite = ExportOptions {
        overwrite: true,
        ..ExportOptions::default()
    };
    let plan = plan_export(
        &container,
        &store.blocking_export().unwrap(),
        &overwrite,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(plan.counts(), (0, 3, 1, 0));
    other
        .blocking_update_checkpoint(&checkpoint(
            "hub",
            "$default",
            0,
            Some("888888".into()),
            Some(8),
        ))
        .unwrap();
    let again = plan_export(
        &container,
        &other.blocking_export().unwrap(),
        &overwrite,
        &no_progress,
    )
    .await
    .unwrap();
    apply_export(&container, &again, &no_progress)
        .await
        .unwrap();
    let report = apply_export(&container, &plan, &no_progress).await.unwrap();
    assert_eq!(report.replaced, 0);
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert_eq!(
        rust_lists(&url, "hub", "$default")["checkpoints"][0]["offset"],
        "888888"
    );

    // Overwrite with a fresh plan replaces it.
    let plan = plan_export(
        &container,
        &store.blocking_export().unwrap(),
        &overwrite,
        &no_progress,
    )
    .await
    .unwrap();
    let report = apply_export(&container, &plan, &no_progress).await.unwrap();
    assert_eq!(report.replaced, 1);
    assert_eq!(
        without_etags(rust_lists(&url, "hub", "$default"))["checkpoints"],
        our_listing(&store, "hub", "$default", false)["checkpoints"]
    );
}

/// A run that stopped half-way (here: only part of the plan applied) converges on the rerun,
/// and a third run has nothing to do. Also the request count of a move of 1024 partitions.
#[tokio::test]
async fn rerun_converges_and_1024_partitions_take_one_request_each() {
    let Some(account) = azurite() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "big", "$default", 1024);
    let url = new_container(&account, "big");
    let container = BlobContainer::from_url(&url, None).unwrap();
    let options = ExportOptions {
        ownership: true,
        ..ExportOptions::default()
    };
    let export = store.blocking_export().unwrap();
    let started = std::time::Instant::now();
    let before = container.requests();
    let mut plan = plan_export(&container, &export, &options, &no_progress)
        .await
        .unwrap();
    assert_eq!(
        container.requests() - before,
        1,
        "an empty container: one list"
    );
    let full = plan.clone();
    plan.blobs.truncate(700);
    apply_export(&container, &plan, &no_progress).await.unwrap();

    let plan = plan_export(&container, &export, &options, &no_progress)
        .await
        .unwrap();
    assert_eq!(plan.counts(), (2048 - 700, 700, 0, 0));
    let report = apply_export(&container, &plan, &no_progress).await.unwrap();
    assert_eq!((report.created, report.same), (2048 - 700, 700));
    let plan = plan_export(&container, &export, &options, &no_progress)
        .await
        .unwrap();
    assert_eq!(plan.counts(), (0, 2048, 0, 0));
    assert_eq!(plan.blobs, {
        let mut f = full.blobs.clone();
        for b in &mut f {
            b.action = BlobAction::Same;
        }
        f
    });

    // One move of 1024 partitions (checkpoints and ownerships) into an empty container.
    let url = new_container(&account, "move");
    let container = BlobContainer::from_url(&url, None).unwrap();
    let t = std::time::Instant::now();
    let plan = plan_export(&container, &export, &options, &no_progress)
        .await
        .unwrap();
    apply_export(&container, &plan, &no_progress).await.unwrap();
    let export_time = t.elapsed();
    let export_requests = container.requests();
    assert_eq!(export_requests, 1 + 2048, "one list, one put per blob");
    let t = std::time::Instant::now();
    let read = read_container(&container, &Scope::default(), true, &no_progress)
        .await
        .unwrap();
    let copy = SqliteCheckpointStore::open(dir.path().join("back.db")).unwrap();
    copy.blocking_import(&read.export, OnConflict::Refuse)
        .unwrap();
    let import_time = t.elapsed();
    let import_requests = container.requests() - export_requests;
    assert_eq!(
        import_requests,
        1 + 2048,
        "one list, one metadata read per blob"
    );
    assert_eq!(
        copy.blocking_export().unwrap().checkpoints,
        export.checkpoints
    );
    eprintln!(
        "FIGURES 1024 partitions on Azurite: export {export_time:?} ({export_requests} requests), \
         import {import_time:?} ({import_requests} requests); whole test {:?}",
        started.elapsed()
    );
}

/// A lease container holding the .NET, Python and Java fixtures reads like the folders.
#[tokio::test]
async fn eph_container_reads_like_the_folders() {
    let Some(account) = azurite() else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eph");
    let url = new_container(&account, "eph-leases");
    let name = container_name(&url);
    // .NET and Java: {prefix}{consumer group}/{partition}; Python 1.x: the container root.
    let layouts = [
        ("dotnet", "functions/$default/"),
        ("java", "$default/"),
        ("python", ""),
    ];
    for (dialect, prefix) in layouts {
        let dir = fixtures.join(dialect);
        python(&account, &["upload", &name, dir.to_str().unwrap(), prefix]);
    }
    let container = BlobContainer::from_url(&url, None).unwrap();
    for (dialect, prefix) in layouts {
        let from_folder = read_eph_leases(fixtures.join(dialect)).unwrap();
        let from_blob = read_eph_container(&container, prefix, &no_progress)
            .await
            .unwrap();
        let leases = |v: &[EphLeaseFile]| v.iter().map(|f| f.lease.clone()).collect::<Vec<_>>();
        assert_eq!(leases(&from_blob), leases(&from_folder), "{dialect}");
        let names: BTreeSet<String> = from_blob
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect();
        let want: BTreeSet<String> = ["0", "1", "2"]
            .iter()
            .map(|p| format!("{prefix}{p}"))
            .collect();
        assert_eq!(names, want, "{dialect}");

        let a = SqliteCheckpointStore::open_in_memory().unwrap();
        let b = SqliteCheckpointStore::open_in_memory().unwrap();
        let a_done = a
            .blocking_import_eph(
                NS,
                "hub",
                "$Default",
                &leases(&from_folder),
                OnConflict::Refuse,
            )
            .unwrap();
        let b_done = b
            .blocking_import_eph(
                NS,
                "hub",
                "$Default",
                &leases(&from_blob),
                OnConflict::Refuse,
            )
            .unwrap();
        assert_eq!(a_done, b_done);
        assert_eq!(a.blocking_export().unwrap(), b.blocking_export().unwrap());
        assert_eq!(
            b.blocking_list_checkpoints(NS, "hub", "$Default")
                .unwrap()
                .len(),
            2
        );
    }
}

/// Runs `eh-checkpoints` with `envs`; (exit code, stdout, stderr).
fn cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"));
    cmd.args(args)
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env_remove("AZURE_STORAGE_CONTAINER_URL");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn sig(sas_url: &str) -> String {
    let sig = sas_url.split("sig=").nth(1).unwrap();
    sig.split('&').next().unwrap().to_owned()
}

/// `blob export` / `blob import` as documented: dry runs write nothing, `--apply` writes,
/// conflicts exit 4, a SAS on the command line is refused, and no secret is ever printed.
#[tokio::test]
async fn cli_export_and_import() {
    let Some(account) = azurite() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "Telemetry", "$Default", 3);
    drop(store);
    let db = dir.path().join("store.db");
    let db = db.to_str().unwrap();
    let url = new_container(&account, "cli");
    let secret = sig(&url);
    let by_url = [("AZURE_STORAGE_CONTAINER_URL", url.as_str())];
    let cs = connection_string(&account);
    let by_name = [("AZURE_STORAGE_CONNECTION_STRING", cs.as_str())];
    let name = container_name(&url);
    let mut printed = String::new();

    // A SAS on the command line is refused before anything is sent.
    let (code, out, err) = cli(
        &["--db", db, "blob", "export", "--container-url", &url],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    printed += &(out + &err);

    let (code, out, err) = cli(
        &[
            "--db",
            db,
            "blob",
            "export",
            "--hub",
            "Telemetry",
            "--group",
            "$Default",
        ],
        &by_url,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run"), "{out}");
    printed += &(out + &err);
    assert_eq!(
        rust_lists(&url, "Telemetry", "$Default")["checkpoints"],
        serde_json::json!([])
    );

    let (code, out, err) = cli(
        &[
            "--db",
            db,
            "--json",
            "blob",
            "export",
            "--hub",
            "Telemetry",
            "--group",
            "$Default",
            "--ownership",
            "--apply",
        ],
        &by_url,
    );
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["applied"]["created"], 12);
    printed += &(out + &err);
    let store = SqliteCheckpointStore::open(db).unwrap();
    assert_eq!(
        without_etags(rust_lists(&url, "Telemetry", "$Default")),
        our_listing(&store, "Telemetry", "$Default", false)
    );

    // The store moves on; the export again conflicts (exit 4, left), --overwrite replaces.
    store
        .blocking_update_checkpoint(&checkpoint(
            "Telemetry",
            "$Default",
            1,
            Some("5".into()),
            Some(5),
        ))
        .unwrap();
    let (code, out, err) = cli(
        &[
            "--db",
            db,
            "blob",
            "export",
            "--container",
            &name,
            "--apply",
        ],
        &by_name,
    );
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("CONFLICT"), "{out}");
    printed += &(out + &err);
    assert_eq!(
        rust_lists(&url, "telemetry", "$default")["checkpoints"][1]["offset"],
        "1111"
    );
    let (code, out, err) = cli(
        &[
            "--db",
            db,
            "blob",
            "export",
            "--container",
            &name,
            "--overwrite",
            "--apply",
        ],
        &by_name,
    );
    assert_eq!(code, 0, "{out}{err}");
    printed += &(out + &err);
    assert_eq!(
        rust_lists(&url, "telemetry", "$default")["checkpoints"][1]["offset"],
        "5"
    );
    // The blobs the scoped export wrote in the processors' spelling moved on too.
    assert_eq!(
        rust_lists(&url, "Telemetry", "$Default")["checkpoints"][1]["offset"],
        "5"
    );

    // Back: a dry run creates no file; --apply imports what the container holds.
    let back = dir.path().join("back.db");
    let back = back.to_str().unwrap();
    let (code, out, err) = cli(
        &["--db", back, "blob", "import", "--container", &name],
        &by_name,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!Path::new(back).exists(), "a dry run creates no database");
    printed += &(out + &err);
    let (code, out, err) = cli(
        &[
            "--db",
            back,
            "blob",
            "import",
            "--ownership",
            "--apply",
            "--group",
            "$DEFAULT",
        ],
        &by_url,
    );
    assert_eq!(code, 0, "{err}");
    printed += &(out + &err);
    let copy = SqliteCheckpointStore::open(back).unwrap();
    assert_eq!(
        our_listing(&copy, "Telemetry", "$Default", false),
        our_listing(&store, "Telemetry", "$Default", false)
    );
    // The store's partition 2 moves on: importing the container again is a conflict.
    copy.blocking_update_checkpoint(&checkpoint(
        "Telemetry",
        "$Default",
        2,
        Some("9".into()),
        Some(9),
    ))
    .unwrap();
    let (code, out, err) = cli(&["--db", back, "blob", "import", "--apply"], &by_url);
    assert_eq!(code, 4, "{out}{err}");
    printed += &(out + &err);
    assert_eq!(
        copy.blocking_list_checkpoints(NS, "telemetry", "$default")
            .unwrap()[2]
            .offset
            .as_deref(),
        Some("9")
    );

    assert!(!printed.contains(&secret), "the SAS signature was printed");
    assert!(!printed.contains(&KEY[..20]), "the account key was printed");
}

/// An export SIGKILLed half-way leaves some blobs written; the rerun converges, and the one
/// after has nothing to do.
#[tokio::test]
async fn cli_rerun_after_kill_converges() {
    let Some(account) = azurite() else { return };
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), "killed", "$default", 1024));
    let db = dir.path().join("store.db");
    let db = db.to_str().unwrap();
    let url = new_container(&account, "killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db, "blob", "export", "--ownership", "--apply"])
        .env("AZURE_STORAGE_CONTAINER_URL", &url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let container = BlobContainer::from_url(&url, None).unwrap();
    // Kill it once some, but not all, of the 2048 blobs are there.
    let written = loop {
        let read = read_container(&container, &Scope::default(), true, &no_progress)
            .await
            .unwrap();
        let n = read.export.checkpoints.len() + read.export.ownerships.len();
        if n > 0 {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // Requests Azurite received before the kill may still complete.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let after_kill = read_container(&container, &Scope::default(), true, &no_progress)
        .await
        .unwrap();
    let n = after_kill.export.checkpoints.len() + after_kill.export.ownerships.len();
    eprintln!("killed with {n} of 2048 blobs written (first seen: {written})");
    assert!(
        n < 2048,
        "the run finished before the kill; nothing was tested"
    );

    let envs = [("AZURE_STORAGE_CONTAINER_URL", url.as_str())];
    let (code, out, err) = cli(
        &[
            "--db",
            db,
            "--json",
            "blob",
            "export",
            "--ownership",
            "--apply",
        ],
        &envs,
    );
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["applied"]["created"].as_u64().unwrap() as usize,
        2048 - n
    );
    assert_eq!(json["applied"]["same"].as_u64().unwrap() as usize, n);
    let (code, out, err) = cli(
        &[
            "--db",
            db,
            "--json",
            "blob",
            "export",
            "--ownership",
            "--apply",
        ],
        &envs,
    );
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            json["applied"]["created"].as_u64(),
            json["applied"]["same"].as_u64()
        ),
        (Some(0), Some(2048))
    );
    let store = SqliteCheckpointStore::open(db).unwrap();
    assert_eq!(
        without_etags(rust_lists(&url, "killed", "$default")),
        our_listing(&store, "killed", "$default", false)
    );
}

/// `import-eph` from a lease container gives what it gives from the downloaded folder.
#[tokio::test]
async fn cli_import_eph_from_a_container() {
    let Some(account) = azurite() else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eph");
    let url = new_container(&account, "cli-eph");
    let name = container_name(&url);
    let dir = tempfile::tempdir().unwrap();
    python(
        &account,
        &[
            "upload",
            &name,
            fixtures.join("dotnet").to_str().unwrap(),
            "lease-prefix/$default/",
        ],
    );
    let scope = ["--namespace", NS, "--hub", "hub", "--group", "$Default"];
    let folder_db = dir.path().join("folder.db");
    let blob_db = dir.path().join("blob.db");
    let mut args = vec!["--db", folder_db.to_str().unwrap(), "--json", "import-eph"];
    let folder = fixtures.join("dotnet");
    args.push(folder.to_str().unwrap());
    args.extend(scope);
    args.push("--apply");
    let (code, from_folder, err) = cli(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let mut args = vec![
        "--db",
        blob_db.to_str().unwrap(),
        "--json",
        "import-eph",
        "--container-url",
    ];
    let plain = url.split('?').next().unwrap().to_owned();
    args.push(&plain);
    args.extend(["--prefix", "lease-prefix/$default"]);
    args.extend(scope);
    args.push("--apply");
    let cs = connection_string(&account);
    let (code, from_blob, err) = cli(&args, &[("AZURE_STORAGE_CONNECTION_STRING", cs.as_str())]);
    assert_eq!(code, 0, "{err}");
    let strip = |s: &str| {
        let mut v: Value = serde_json::from_str(s).unwrap();
        for row in v.as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("file");
        }
        v
    };
    assert_eq!(strip(&from_blob), strip(&from_folder));
    assert_eq!(strip(&from_blob).as_array().unwrap().len(), 3);
    let a = SqliteCheckpointStore::open(&folder_db).unwrap();
    let b = SqliteCheckpointStore::open(&blob_db).unwrap();
    assert_eq!(a.blocking_export().unwrap(), b.blocking_export().unwrap());
    // A folder and a container at once is a usage error.
    let mut args = vec![
        "--db",
        blob_db.to_str().unwrap(),
        "import-eph",
        folder.to_str().unwrap(),
        "--container",
        &name,
    ];
    args.extend(scope);
    assert_eq!(
        cli(&args, &[("AZURE_STORAGE_CONNECTION_STRING", cs.as_str())]).0,
        2
    );
}
