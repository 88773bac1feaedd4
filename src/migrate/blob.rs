//! Feature `blob`: moving a store to Azure Blob Storage, in the layout of the official Blob
//! checkpoint stores, and back; and reading an EventProcessorHost lease container.
//!
//! # The layout
//!
//! One empty blob per partition, all state in its metadata, as every official Blob store
//! (Rust, .NET, Python, Java, JS, Go) reads and writes it:
//!
//! | blob | metadata |
//! |---|---|
//! | `{namespace}/{event hub}/{consumer group}/checkpoint/{partition}` | `offset`, `sequencenumber` |
//! | `{namespace}/{event hub}/{consumer group}/ownership/{partition}` | `ownerid` (`""` when released) |
//!
//! # Spelling
//!
//! The .NET, Python and JS stores lowercase the namespace, event hub and consumer group of the
//! blob name (Python the partition id too); the Rust store 0.9, Java and Go use the names as
//! the processor spells them (the Rust processor's default group is `$Default`). The store
//! keeps names folded to lowercase, so an [export](plan_export) always writes the lowercase
//! name, and, when the [`Scope`] gives a name in another spelling, the same blob under that
//! spelling too: give `--group '$Default'` (etc.) as the processors spell it, and every SDK
//! finds its blob. Blobs of a partition that the container already holds in another spelling
//! are written too, so no SDK reads a stale position. Reading a container ([`read_container`])
//! accepts any spelling; of two blobs of one partition it reads the one modified last.
//!
//! # Safe under a live fleet
//!
//! A plan reads what the container holds. Applying it creates a missing blob only with
//! `If-None-Match: *` and replaces one (with `overwrite`) only with `If-Match` on the etag the
//! plan read; a blob that differs without `overwrite`, or that changed since the plan, is a
//! conflict: reported, and left as it is. A blob that already holds what would be written is
//! left alone, so a rerun after a failure converges.
//!
//! Going back ([`read_container`]) builds a [`StoreExport`] that
//! [`SqliteCheckpointStore::blocking_import`](crate::SqliteCheckpointStore::blocking_import) validates
//! completely and writes in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::path::{Path, PathPart};
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::Serialize;
use time::OffsetDateTime;

use crate::migrate::eph::{EphLease, EphLeaseFile, MAX_LEASE_FILE_LEN};
use crate::migrate::export::{
    ExportedCheckpoint, ExportedOwnership, StoreExport, EXPORT_FORMAT, EXPORT_FORMAT_VERSION,
};

/// How many requests run at once.
const CONCURRENCY: usize = 32;

/// The well-known account of the storage emulator (Azurite), as in every Azure SDK.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// What can go wrong moving positions to or from Blob Storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The container URL or connection string is not usable; the reason says why. Secrets are
    /// never part of the message.
    #[error("invalid {what}: {reason}")]
    Config {
        /// `container URL` or `connection string`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A request to Blob Storage failed (after the client's retries).
    #[error("{operation} `{blob}` failed: {source}")]
    Storage {
        /// `list`, `read`, `write`.
        operation: &'static str,
        /// The blob, or the container for a list.
        blob: String,
        /// The client's error (it never contains a SAS or a key).
        #[source]
        source: object_store::Error,
    },
    /// A blob or a store row cannot be carried over: the reason names it.
    #[error("{0}")]
    Invalid(String),
    /// The store refused (see [`crate::Error`]).
    #[error(transparent)]
    Store(#[from] crate::Error),
}

type Result<T> = std::result::Result<T, BlobError>;

fn storage(operation: &'static str, blob: &str, source: object_store::Error) -> BlobError {
    BlobError::Storage {
        operation,
        blob: blob.to_owned(),
        source,
    }
}

fn config(what: &'static str, reason: impl Into<String>) -> BlobError {
    BlobError::Config {
        what,
        reason: reason.into(),
    }
}

/// Counts the HTTP requests the client sends (retries included).
#[derive(Debug)]
struct Counting {
    inner: HttpClient,
    count: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl HttpService for Counting {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.execute(req).await
    }
}

#[derive(Debug)]
struct CountingConnector(Arc<AtomicU64>);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Counting {
            inner: ReqwestConnector::default().connect(options)?,
            count: self.0.clone(),
        }))
    }
}

/// One blob container and a credential for it.
#[derive(Debug, Clone)]
pub struct BlobContainer {
    store: Arc<MicrosoftAzure>,
    label: String,
    requests: Arc<AtomicU64>,
}

/// Where the credential comes from.
enum Credential {
    Key(String),
    Sas(Vec<(String, String)>),
    None,
}

impl BlobContainer {
    fn build(
        endpoint: &str,
        account: &str,
        container: &str,
        credential: Credential,
    ) -> Result<Self> {
        if container.is_empty() {
            return Err(config("container URL", "it names no container"));
        }
        let requests = Arc::new(AtomicU64::new(0));
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(account)
            .with_container_name(container)
            .with_endpoint(endpoint.trim_end_matches('/').to_owned())
            // Idle connections are dropped before a server's keep-alive timeout (Azurite's
            // node server: 5 s) can close one under a request.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_pool_idle_timeout(std::time::Duration::from_secs(2)),
            )
            .with_http_connector(CountingConnector(requests.clone()));
        builder = match credential {
            Credential::Key(key) => builder.with_access_key(key),
            Credential::Sas(pairs) => builder.with_sas_authorization(pairs),
            Credential::None => builder.with_skip_signature(true),
        };
        let store = builder
            .build()
            .map_err(|e| config("container URL", e.to_string()))?;
        Ok(BlobContainer {
            store: Arc::new(store),
            label: format!("{}/{container}", endpoint.trim_end_matches('/')),
            requests,
        })
    }

    /// A container from its URL: `https://ACCOUNT.blob.core.windows.net/CONTAINER?SAS`, or the
    /// path style of the emulator and of custom endpoints, `http://HOST:PORT/ACCOUNT/CONTAINER?SAS`.
    /// The SAS (the query) is the credential; without one, `account_key` (from a connection
    /// string, see [`from_connection_string`](Self::from_connection_string)) is used if given,
    /// else requests go unsigned (a public container).
    ///
    /// # Errors
    /// [`BlobError::Config`] for a URL that names no container.
    pub fn from_url(url: &str, account_key: Option<&str>) -> Result<Self> {
        let what = "container URL";
        let parsed = url::Url::parse(url).map_err(|e| config(what, e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(config(what, "the scheme must be http or https"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| config(what, "it has no host"))?;
        let origin = match parsed.port() {
            Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
            None => format!("{}://{host}", parsed.scheme()),
        };
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let (endpoint, account, container) = match segments.as_slice() {
            [container] => {
                let account = host.split('.').next().unwrap_or_default();
                (origin, account.to_owned(), (*container).to_owned())
            }
            [account, container] => (
                format!("{origin}/{account}"),
                (*account).to_owned(),
                (*container).to_owned(),
            ),
            _ => {
                return Err(config(
                    what,
                    "expected https://ACCOUNT.blob.core.windows.net/CONTAINER or \
                     http://HOST:PORT/ACCOUNT/CONTAINER (blob prefixes are separate options)",
                ))
            }
        };
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let credential = if !pairs.is_empty() {
            Credential::Sas(pairs)
        } else if let Some(key) = account_key {
            Credential::Key(key.to_owned())
        } else {
            Credential::None
        };
        Self::build(&endpoint, &account, &container, credential)
    }

    /// A container by name in the account of an Azure Storage connection string (the form of
    /// `AZURE_STORAGE_CONNECTION_STRING`): `AccountName`, `AccountKey` or
    /// `SharedAccessSignature`, `BlobEndpoint` or `DefaultEndpointsProtocol` +
    /// `EndpointSuffix`; or `UseDevelopmentStorage=true` (the emulator on 127.0.0.1:10000, or
    /// `DevelopmentStorageProxyUri`).
    ///
    /// # Errors
    /// [`BlobError::Config`] for a connection string that lacks an account or a credential
    /// (the message never repeats a key or a signature).
    pub fn from_connection_string(connection_string: &str, container: &str) -> Result<Self> {
        let cs = ConnectionString::parse(connection_string)?;
        let credential = match (cs.key, cs.sas) {
            (Some(key), _) => Credential::Key(key),
            (None, Some(sas)) => Credential::Sas(
                url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
            (None, None) => {
                return Err(config(
                    "connection string",
                    "it has neither AccountKey nor SharedAccessSignature",
                ))
            }
        };
        Self::build(&cs.endpoint, &cs.account, container, credential)
    }

    /// The container's URL, without any credential: safe to print.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How many HTTP requests this container's client has sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Every blob under `prefix` (or the whole container), with its etag and time.
    async fn list(&self, prefix: Option<&str>) -> Result<Vec<object_store::ObjectMeta>> {
        let prefix = prefix.map(Path::from);
        self.store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| storage("list", &self.label, e))
    }

    /// The metadata (keys lowercased) of a blob.
    async fn metadata(&self, meta: &object_store::ObjectMeta) -> Result<BTreeMap<String, String>> {
        let got = self
            .store
            .get_opts(&meta.location, GetOptions::default().with_head(true))
            .await
            .map_err(|e| storage("read", meta.location.as_ref(), e))?;
        Ok(got
            .attributes
            .iter()
            .filter_map(|(k, v)| match k {
                Attribute::Metadata(k) => Some((k.to_ascii_lowercase(), v.as_ref().to_owned())),
                _ => None,
            })
            .collect())
    }
}

/// The parts of a connection string this module uses.
struct ConnectionString {
    account: String,
    endpoint: String,
    key: Option<String>,
    sas: Option<String>,
}

impl ConnectionString {
    fn parse(text: &str) -> Result<Self> {
        let what = "connection string";
        let mut fields = HashMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                // Never echo the part: it may be a key.
                return Err(config(what, "a part is not KEY=VALUE"));
            };
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let get = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let endpoint = match get("developmentstorageproxyuri") {
                Some(proxy) => format!("{}/{DEV_ACCOUNT}", proxy.trim_end_matches('/')),
                None => DEV_ENDPOINT.to_owned(),
            };
            return Ok(ConnectionString {
                account: DEV_ACCOUNT.to_owned(),
                endpoint,
                key: Some(DEV_KEY.to_owned()),
                sas: None,
            });
        }
        let account = get("accountname");
        let endpoint = match (get("blobendpoint"), &account) {
            (Some(e), _) => e,
            (None, Some(account)) => format!(
                "{}://{account}.blob.{}",
                get("defaultendpointsprotocol").unwrap_or_else(|| "https".to_owned()),
                get("endpointsuffix").unwrap_or_else(|| "core.windows.net".to_owned())
            ),
            (None, None) => {
                return Err(config(what, "it has neither AccountName nor BlobEndpoint"))
            }
        };
        let account = match account {
            Some(a) => a,
            // A BlobEndpoint with a SAS and no AccountName: the account is the host's first
            // label, or the first path segment of a path-style endpoint.
            None => {
                let url = url::Url::parse(&endpoint).map_err(|e| config(what, e.to_string()))?;
                match url
                    .path_segments()
                    .and_then(|mut s| s.next())
                    .filter(|s| !s.is_empty())
                {
                    Some(first) => first.to_owned(),
                    None => url
                        .host_str()
                        .unwrap_or_default()
                        .split('.')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                }
            }
        };
        Ok(ConnectionString {
            account,
            endpoint,
            key: get("accountkey"),
            sas: get("sharedaccesssignature"),
        })
    }
}

/// Which event hubs and groups a move covers. Names match case-insensitively; a name given in
/// another spelling than lowercase is also written in that spelling (see the [module
/// docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this event hub.
    pub event_hub: Option<String>,
    /// Only this consumer group.
    pub consumer_group: Option<String>,
}

impl Scope {
    /// Whether the names are in scope.
    pub fn matches(&self, namespace: &str, event_hub: &str, consumer_group: &str) -> bool {
        let ok = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        ok(&self.namespace, namespace)
            && ok(&self.event_hub, event_hub)
            && ok(&self.consumer_group, consumer_group)
    }

    /// The spellings to write for names in scope: the lowercase one, then the scope's own.
    fn spellings(&self, names: [&str; 3]) -> Vec<[String; 3]> {
        let lower = names.map(str::to_ascii_lowercase);
        let given = [&self.namespace, &self.event_hub, &self.consumer_group];
        let mut verbatim = lower.clone();
        for (v, g) in verbatim.iter_mut().zip(given) {
            if let Some(g) = g {
                v.clone_from(g);
            }
        }
        if verbatim == lower {
            vec![lower]
        } else {
            vec![lower, verbatim]
        }
    }
}

/// Which of the two kinds of blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    /// `…/checkpoint/{partition}`.
    Checkpoint,
    /// `…/ownership/{partition}`.
    Ownership,
}

impl BlobKind {
    fn segment(self) -> &'static str {
        match self {
            BlobKind::Checkpoint => "checkpoint",
            BlobKind::Ownership => "ownership",
        }
    }
}

/// What applying a plan does with one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BlobAction {
    /// The blob does not exist: create it (`If-None-Match: *`).
    Create,
    /// The blob holds this metadata already: nothing to do.
    Same,
    /// The blob differs and overwrite was given: replace it if its etag is still this one.
    Replace {
        /// The etag read by the plan (`If-Match`).
        etag: String,
        /// The metadata the blob holds now.
        current: BTreeMap<String, String>,
    },
    /// The blob differs and overwrite was not given: left as it is.
    Conflict {
        /// The metadata the blob holds now.
        current: BTreeMap<String, String>,
    },
}

/// One blob of an export plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedBlob {
    /// The blob name.
    pub blob: String,
    /// Checkpoint or ownership.
    pub kind: BlobKind,
    /// The metadata to write.
    pub metadata: BTreeMap<String, String>,
    /// What applying does.
    #[serde(flatten)]
    pub action: BlobAction,
}

/// What [`plan_export`] found: every blob it would write, and the rows it cannot carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportPlan {
    /// The container (no credential).
    pub container: String,
    /// Every blob of the rows in scope, in the store's order.
    pub blobs: Vec<PlannedBlob>,
    /// Rows left out, with the reason (legacy placeholders, which name no position).
    pub skipped: Vec<String>,
}

impl ExportPlan {
    /// How many blobs have each action: (create, same, replace, conflict).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for b in &self.blobs {
            match b.action {
                BlobAction::Create => c.0 += 1,
                BlobAction::Same => c.1 += 1,
                BlobAction::Replace { .. } => c.2 += 1,
                BlobAction::Conflict { .. } => c.3 += 1,
            }
        }
        c
    }
}

/// What [`plan_export`] exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Which rows.
    pub scope: Scope,
    /// Ownerships too (for a stopped fleet: owner ids carry over; otherwise processors claim
    /// afresh on the other side).
    pub ownership: bool,
    /// Replace blobs that differ (each only if unchanged since the plan read it).
    pub overwrite: bool,
}

/// What [`apply_export`] did with one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedBlob {
    /// The blob name.
    pub blob: String,
    /// `created`, `replaced`, `same` or `conflict`.
    pub outcome: &'static str,
    /// For a conflict: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What [`apply_export`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Blobs created.
    pub created: usize,
    /// Blobs replaced.
    pub replaced: usize,
    /// Blobs that already held what the plan wanted.
    pub same: usize,
    /// Blobs left as they are because they differ, or changed after the plan: each with why.
    pub conflicts: Vec<AppliedBlob>,
}

fn checked_part<'a>(what: &str, s: &'a str) -> Result<&'a str> {
    let part = PathPart::from(s);
    if s.is_empty() || part.as_ref() != s || s == "." || s == ".." {
        return Err(BlobError::Invalid(format!(
            "{what} {s:?} cannot be a blob name segment (empty, `.`, `..`, or one of / \\ {{ }} ^ % ` [ ] \" < > ~ # | * ? or a control character)"
        )));
    }
    Ok(s)
}

fn blob_name(names: &[String; 3], kind: BlobKind, partition: &str) -> Result<String> {
    Ok(format!(
        "{}/{}/{}/{}/{}",
        checked_part("namespace", &names[0])?,
        checked_part("event hub", &names[1])?,
        checked_part("consumer group", &names[2])?,
        kind.segment(),
        checked_part("partition id", partition)?,
    ))
}

/// The blobs of an export's rows in scope, each with the metadata it gets.
/// A blob to write: its name, kind and metadata.
type Wanted = (String, BlobKind, BTreeMap<String, String>);

fn wanted(export: &StoreExport, options: &ExportOptions) -> Result<(Vec<Wanted>, Vec<String>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for c in &export.checkpoints {
        if !options
            .scope
            .matches(&c.namespace, &c.event_hub, &c.consumer_group)
        {
            continue;
        }
        let names = [
            c.namespace.as_str(),
            c.event_hub.as_str(),
            c.consumer_group.as_str(),
        ];
        if c.offset.is_none() && c.sequence_number.is_none() {
            skipped.push(format!(
                "checkpoint {}/{}/{}/{}: a legacy placeholder (no position)",
                names[0], names[1], names[2], c.partition_id
            ));
            continue;
        }
        let mut meta = BTreeMap::new();
        if let Some(o) = &c.offset {
            meta.insert("offset".to_owned(), o.clone());
        }
        if let Some(s) = c.sequence_number {
            meta.insert("sequencenumber".to_owned(), s.to_string());
        }
        for spelling in options.scope.spellings(names) {
            out.push((
                blob_name(&spelling, BlobKind::Checkpoint, &c.partition_id)?,
                BlobKind::Checkpoint,
                meta.clone(),
            ));
        }
    }
    if options.ownership {
        for o in &export.ownerships {
            if !options
                .scope
                .matches(&o.namespace, &o.event_hub, &o.consumer_group)
            {
                continue;
            }
            let names = [
                o.namespace.as_str(),
                o.event_hub.as_str(),
                o.consumer_group.as_str(),
            ];
            // Released: "" as .NET, Python, Java, JS and Go write it (a missing key makes the
            // Python and JS stores fail their list).
            let meta =
                BTreeMap::from([("ownerid".to_owned(), o.owner_id.clone().unwrap_or_default())]);
            for spelling in options.scope.spellings(names) {
                out.push((
                    blob_name(&spelling, BlobKind::Ownership, &o.partition_id)?,
                    BlobKind::Ownership,
                    meta.clone(),
                ));
            }
        }
    }
    Ok((out, skipped))
}

/// Plans writing the rows of `export` in scope (checkpoints, and ownerships if asked) into the
/// container: lists the container once, and reads the metadata of the blobs that exist.
/// Nothing is written.
///
/// # Errors
/// [`BlobError::Invalid`] for a name that cannot be a blob name segment; [`BlobError::Storage`]
/// if the container cannot be listed or read.
pub async fn plan_export(
    container: &BlobContainer,
    export: &StoreExport,
    options: &ExportOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ExportPlan> {
    let (wanted, skipped) = wanted(export, options)?;
    let existing: HashMap<String, object_store::ObjectMeta> = container
        .list(None)
        .await?
        .into_iter()
        .map(|m| (m.location.as_ref().to_owned(), m))
        .collect();
    // Blobs of the same partition in other spellings (an earlier scoped export, or a processor
    // of an SDK that keeps the case) get the same position, so that no SDK reads a stale one.
    let mut spellings: HashMap<String, Vec<&str>> = HashMap::new();
    for name in existing.keys() {
        spellings
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(name);
    }
    let names: std::collections::HashSet<String> = wanted.iter().map(|w| w.0.clone()).collect();
    let mut all = Vec::with_capacity(wanted.len());
    for (blob, kind, metadata) in wanted {
        let mut others: Vec<&str> = spellings
            .get(&blob.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .copied()
            .filter(|n| !names.contains(*n))
            .collect();
        others.sort_unstable();
        let others: Vec<Wanted> = others
            .into_iter()
            .map(|n| (n.to_owned(), kind, metadata.clone()))
            .collect();
        all.push((blob, kind, metadata));
        all.extend(others);
    }
    let wanted = all;
    let total = wanted.len();
    let done = AtomicU64::new(0);
    let blobs = futures_util::stream::iter(wanted.into_iter().map(|(blob, kind, metadata)| {
        let found = existing.get(&blob);
        let done = &done;
        async move {
            let action = match found {
                None => BlobAction::Create,
                Some(meta) => {
                    let current = container.metadata(meta).await?;
                    if current == metadata {
                        BlobAction::Same
                    } else if options.overwrite {
                        BlobAction::Replace {
                            etag: meta.e_tag.clone().unwrap_or_default(),
                            current,
                        }
                    } else {
                        BlobAction::Conflict { current }
                    }
                }
            };
            progress(done.fetch_add(1, Ordering::Relaxed) as usize + 1, total);
            Ok::<_, BlobError>(PlannedBlob {
                blob,
                kind,
                metadata,
                action,
            })
        }
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    Ok(ExportPlan {
        container: container.label().to_owned(),
        blobs,
        skipped,
    })
}

/// Writes what `plan` says: creates with `If-None-Match: *`, replaces with `If-Match` on the
/// etag the plan read. A blob that now exists, or changed since, is a conflict (reported, not
/// written); conflicts of the plan are reported again. Empty bodies, the metadata only.
///
/// # Errors
/// [`BlobError::Storage`] for a failed request other than a failed precondition; the blobs
/// written before it stay written (a rerun plans them as `Same`).
pub async fn apply_export(
    container: &BlobContainer,
    plan: &ExportPlan,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ExportReport> {
    let total = plan.blobs.len();
    let done = AtomicU64::new(0);
    let results: Vec<AppliedBlob> = futures_util::stream::iter(plan.blobs.iter().map(|b| {
        let done = &done;
        async move {
            let mode = match &b.action {
                BlobAction::Create => Some(PutMode::Create),
                BlobAction::Replace { etag, .. } => Some(PutMode::Update(UpdateVersion {
                    e_tag: Some(etag.clone()),
                    version: None,
                })),
                BlobAction::Same | BlobAction::Conflict { .. } => None,
            };
            let outcome = match (mode, &b.action) {
                (None, BlobAction::Same) => ("same", None),
                (None, _) => (
                    "conflict",
                    Some("differs from the store (not replaced without overwrite)".to_owned()),
                ),
                (Some(mode), _) => {
                    let creating = matches!(mode, PutMode::Create);
                    let mut attributes = Attributes::new();
                    for (k, v) in &b.metadata {
                        attributes.insert(
                            Attribute::Metadata(k.clone().into()),
                            AttributeValue::from(v.clone()),
                        );
                    }
                    let opts = PutOptions {
                        mode,
                        attributes,
                        ..PutOptions::default()
                    };
                    match put(container, b, opts).await? {
                        Put::Done if creating => ("created", None),
                        Put::Done => ("replaced", None),
                        Put::Refused if creating => (
                            "conflict",
                            Some("created by someone else after the plan".to_owned()),
                        ),
                        Put::Refused => (
                            "conflict",
                            Some("changed or deleted after the plan".to_owned()),
                        ),
                    }
                }
            };
            progress(done.fetch_add(1, Ordering::Relaxed) as usize + 1, total);
            Ok::<_, BlobError>(AppliedBlob {
                blob: b.blob.clone(),
                outcome: outcome.0,
                reason: outcome.1,
            })
        }
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    let mut report = ExportReport::default();
    for r in results {
        match r.outcome {
            "created" => report.created += 1,
            "replaced" => report.replaced += 1,
            "same" => report.same += 1,
            _ => report.conflicts.push(r),
        }
    }
    Ok(report)
}

enum Put {
    Done,
    Refused,
}

/// One conditional put. The client does not retry a conditional put whose connection failed
/// (it is not idempotent), so this does, up to 3 times; when a retry's precondition fails, the
/// blob is read: holding exactly our metadata, it is our own earlier attempt that landed.
async fn put(container: &BlobContainer, b: &PlannedBlob, opts: PutOptions) -> Result<Put> {
    let path = Path::from(b.blob.as_str());
    let mut attempt = 0;
    loop {
        attempt += 1;
        match container
            .store
            .put_opts(&path, PutPayload::new(), opts.clone())
            .await
        {
            Ok(_) => return Ok(Put::Done),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) if attempt > 1 => {
                let meta = container
                    .store
                    .head(&path)
                    .await
                    .map_err(|e| storage("read", &b.blob, e))?;
                let ours = container.metadata(&meta).await? == b.metadata;
                return Ok(if ours { Put::Done } else { Put::Refused });
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => return Ok(Put::Refused),
            Err(object_store::Error::Generic { .. }) if attempt < 4 => {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => return Err(storage("write", &b.blob, e)),
        }
    }
}

/// What [`read_container`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRead {
    /// The positions (and, if asked, ownerships) in scope, as an export to import. Names are
    /// folded to lowercase; an ownership's etag and time are the blob's, its epoch 0.
    pub export: StoreExport,
    /// Blobs in the layout that were passed over, with the reason (another spelling of a
    /// partition already read, no position, ownership not asked for).
    pub notes: Vec<String>,
    /// Blobs outside the layout (not `{ns}/{hub}/{cg}/checkpoint|ownership/{partition}`).
    pub other_blobs: usize,
}

struct Found {
    meta: object_store::ObjectMeta,
    kind: BlobKind,
    names: [String; 4],
}

/// Reads a container written by any official Blob checkpoint store (or by [`apply_export`]):
/// the checkpoints in scope and, with `ownership`, the ownerships. Any spelling of the names is
/// accepted; names are folded to lowercase, and of two blobs of one partition the one modified
/// last wins (the other is named in the notes).
///
/// # Errors
/// [`BlobError::Storage`] if the container cannot be listed or a blob read;
/// [`BlobError::Invalid`] for a blob whose metadata is not a position (naming the blob).
pub async fn read_container(
    container: &BlobContainer,
    scope: &Scope,
    ownership: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ContainerRead> {
    let mut notes = Vec::new();
    let mut other_blobs = 0;
    // Newest blob per (kind, folded names).
    let mut chosen: BTreeMap<(BlobKind, [String; 4]), Found> = BTreeMap::new();
    for meta in container.list(None).await? {
        let name = meta.location.as_ref().to_owned();
        let parts: Vec<&str> = name.split('/').collect();
        let kind = match parts.as_slice() {
            [_, _, _, k, _] if k.eq_ignore_ascii_case("checkpoint") => BlobKind::Checkpoint,
            [_, _, _, k, _] if k.eq_ignore_ascii_case("ownership") => BlobKind::Ownership,
            _ => {
                other_blobs += 1;
                continue;
            }
        };
        if !scope.matches(parts[0], parts[1], parts[2]) {
            continue;
        }
        if kind == BlobKind::Ownership && !ownership {
            continue;
        }
        let names = [
            parts[0].to_ascii_lowercase(),
            parts[1].to_ascii_lowercase(),
            parts[2].to_ascii_lowercase(),
            parts[4].to_owned(),
        ];
        let found = Found { meta, kind, names };
        let key = (kind, found.names.clone());
        match chosen.get(&key) {
            Some(old) if old.meta.last_modified >= found.meta.last_modified => notes.push(format!(
                "{} is read, not {}: one partition in two spellings, the first modified last",
                old.meta.location, found.meta.location
            )),
            Some(old) => {
                notes.push(format!(
                    "{} is read, not {}: one partition in two spellings, the first modified last",
                    found.meta.location, old.meta.location
                ));
                chosen.insert(key, found);
            }
            None => {
                chosen.insert(key, found);
            }
        }
    }
    // Partition ids are verbatim except in the Python store, which lowercases them: numeric
    // ids are the same either way, so nothing more is folded.
    let total = chosen.len();
    let done = AtomicU64::new(0);
    let read: Vec<(Found, BTreeMap<String, String>)> =
        futures_util::stream::iter(chosen.into_values().map(|f| {
            let done = &done;
            async move {
                let metadata = container.metadata(&f.meta).await?;
                progress(done.fetch_add(1, Ordering::Relaxed) as usize + 1, total);
                Ok::<_, BlobError>((f, metadata))
            }
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut export = StoreExport {
        format: EXPORT_FORMAT.to_owned(),
        format_version: EXPORT_FORMAT_VERSION,
        schema_version: 0,
        ownerships: Vec::new(),
        checkpoints: Vec::new(),
    };
    for (f, metadata) in read {
        let [namespace, event_hub, consumer_group, partition_id] = f.names;
        let blob = f.meta.location.as_ref();
        match f.kind {
            BlobKind::Checkpoint => {
                let offset = metadata
                    .get("offset")
                    .filter(|o| !o.is_empty() && o.as_str() != "no offset")
                    .cloned();
                let sequence_number = match metadata.get("sequencenumber").map(String::as_str) {
                    None | Some("") => None,
                    Some(s) => Some(s.parse::<i64>().map_err(|_| {
                        BlobError::Invalid(format!(
                            "{blob}: metadata `sequencenumber` is {s:?}, not an integer"
                        ))
                    })?),
                };
                if offset.is_none() && sequence_number.is_none() {
                    notes.push(format!(
                        "{blob} passed over: no offset and no sequence number"
                    ));
                    continue;
                }
                export.checkpoints.push(ExportedCheckpoint {
                    namespace,
                    event_hub,
                    consumer_group,
                    partition_id,
                    offset,
                    sequence_number,
                });
            }
            BlobKind::Ownership => {
                let last_modified = OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(f.meta.last_modified.timestamp()) * 1_000_000_000
                        + i128::from(f.meta.last_modified.timestamp_subsec_nanos()),
                )
                .map_err(|e| BlobError::Invalid(format!("{blob}: last modified time: {e}")))?;
                export.ownerships.push(ExportedOwnership {
                    namespace,
                    event_hub,
                    consumer_group,
                    partition_id,
                    owner_id: metadata.get("ownerid").filter(|o| !o.is_empty()).cloned(),
                    etag: f
                        .meta
                        .e_tag
                        .clone()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                    last_modified,
                    epoch: 0,
                    event_processor_context: None,
                });
            }
        }
    }
    Ok(ContainerRead {
        export,
        notes,
        other_blobs,
    })
}

/// Reads the EventProcessorHost lease blobs directly under `prefix` in a lease container (the
/// container root for Python 1.x; `{prefix}{consumer group}/` for .NET and Java), like
/// [`read_eph_leases`](crate::migrate::eph::read_eph_leases) reads a downloaded folder: each blob's name
/// is its [`EphLeaseFile::path`].
///
/// # Errors
/// [`BlobError::Storage`] if the container cannot be listed or a blob read;
/// [`BlobError::Store`] ([`crate::Error::InvalidArgument`], naming the blob) for a blob that
/// is not a lease, too large, or a second lease of one partition. Every blob is read before
/// this returns.
pub async fn read_eph_container(
    container: &BlobContainer,
    prefix: &str,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<EphLeaseFile>> {
    let prefix = prefix.trim_start_matches('/');
    let dir = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    let mut blobs: Vec<object_store::ObjectMeta> = container
        .list((!dir.is_empty()).then_some(dir.trim_end_matches('/')))
        .await?
        .into_iter()
        .filter(|m| {
            m.location
                .as_ref()
                .strip_prefix(dir.as_str())
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        })
        .collect();
    blobs.sort_by(|a, b| a.location.cmp(&b.location));
    let total = blobs.len();
    let done = AtomicU64::new(0);
    let leases: Vec<EphLeaseFile> = futures_util::stream::iter(blobs.into_iter().map(|m| {
        let done = &done;
        async move {
            let name = m.location.as_ref().to_owned();
            let invalid = |reason: String| {
                BlobError::Store(crate::Error::InvalidArgument {
                    field: "lease",
                    reason,
                })
            };
            if m.size > MAX_LEASE_FILE_LEN {
                return Err(invalid(format!(
                    "`{name}` is {} bytes, too large for a lease blob (limit {MAX_LEASE_FILE_LEN})",
                    m.size
                )));
            }
            let got = container
                .store
                .get(&m.location)
                .await
                .map_err(|e| storage("read", &name, e))?;
            let bytes = got.bytes().await.map_err(|e| storage("read", &name, e))?;
            let base = name.rsplit('/').next().unwrap_or(&name);
            let base = base.strip_suffix(".json").unwrap_or(base);
            let lease = EphLease::parse(&bytes, Some(base)).map_err(|e| match e {
                crate::Error::InvalidArgument { reason, .. } => {
                    invalid(format!("`{name}`: {reason}"))
                }
                other => BlobError::Store(other),
            })?;
            progress(done.fetch_add(1, Ordering::Relaxed) as usize + 1, total);
            Ok(EphLeaseFile {
                path: PathBuf::from(name),
                lease,
            })
        }
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    let mut seen = std::collections::HashSet::new();
    for f in &leases {
        if !seen.insert(f.lease.partition_id.as_str()) {
            return Err(BlobError::Store(crate::Error::InvalidArgument {
                field: "lease",
                reason: format!(
                    "partition `{}` appears twice (again in `{}`): are two consumer groups mixed?",
                    f.lease.partition_id,
                    f.path.display()
                ),
            }));
        }
    }
    Ok(leases)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn container_urls() {
        let c = BlobContainer::from_url(
            "https://acct.blob.core.windows.net/leases?sv=2022&sig=SECRETSIG",
            None,
        )
        .unwrap();
        assert_eq!(c.label(), "https://acct.blob.core.windows.net/leases");
        let c = BlobContainer::from_url("http://127.0.0.1:10000/devstoreaccount1/c", Some(DEV_KEY))
            .unwrap();
        assert_eq!(c.label(), "http://127.0.0.1:10000/devstoreaccount1/c");
        for bad in [
            "ftp://a/b",
            "https://acct.blob.core.windows.net/",
            "https://h/a/b/c",
            "not a url",
        ] {
            let e = BlobContainer::from_url(bad, None).unwrap_err();
            assert!(matches!(e, BlobError::Config { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn connection_strings() {
        let cs = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            (cs.account.as_str(), cs.endpoint.as_str()),
            (DEV_ACCOUNT, DEV_ENDPOINT)
        );
        let cs = ConnectionString::parse(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=S3CRET==;EndpointSuffix=core.chinacloudapi.cn",
        )
        .unwrap();
        assert_eq!(cs.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        assert_eq!(cs.key.as_deref(), Some("S3CRET=="));
        let cs = ConnectionString::parse(
            "BlobEndpoint=http://127.0.0.1:5/devstoreaccount1;SharedAccessSignature=sv=1&sig=x",
        )
        .unwrap();
        assert_eq!(cs.account, "devstoreaccount1");
        assert_eq!(cs.sas.as_deref(), Some("sv=1&sig=x"));
        // Errors never repeat the secret parts.
        let e = ConnectionString::parse("AccountName=a;S3CRETKEYWITHOUTEQUALS")
            .err()
            .unwrap();
        assert!(!e.to_string().contains("S3CRET"), "{e}");
        let e = BlobContainer::from_connection_string("AccountName=a;AccountKey=", "c")
            .err()
            .unwrap();
        assert!(!e.to_string().contains("AccountKey="), "{e}");
        assert!(
            BlobContainer::from_connection_string("AccountName=a", "c").is_err(),
            "no credential"
        );
    }

    #[test]
    fn spellings_and_names() {
        let scope = Scope {
            namespace: None,
            event_hub: Some("Telemetry".into()),
            consumer_group: Some("$Default".into()),
        };
        assert!(scope.matches("ns", "telemetry", "$default"));
        assert!(!scope.matches("ns", "other", "$default"));
        assert_eq!(
            scope.spellings(["ns", "telemetry", "$default"]),
            [
                ["ns", "telemetry", "$default"].map(String::from),
                ["ns", "Telemetry", "$Default"].map(String::from)
            ]
        );
        assert_eq!(Scope::default().spellings(["NS", "h", "g"]).len(), 1);
        let names = ["ns", "h", "g"].map(String::from);
        assert_eq!(
            blob_name(&names, BlobKind::Ownership, "3").unwrap(),
            "ns/h/g/ownership/3"
        );
        for bad in ["", "a/b", "x*", "..", "c%d"] {
            assert!(
                blob_name(&names, BlobKind::Checkpoint, bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
