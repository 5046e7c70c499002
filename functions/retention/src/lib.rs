//! The scheduled retention job: what DynamoDB's TTL alone cannot enforce.
//!
//! 1. Conversations idle longer than their site's *current* retention (a site
//!    that shortened its retention after they were written) are erased.
//! 2. Stored IPs older than their site's IP retention are removed.
//! 3. Orphans are deleted: messages whose session item the
//!    TTL sweeper already removed (DynamoDB's TTL does not cascade).
//!
//! Each run does at most `budget` units of work (items acted on or scanned) and
//! saves a checkpoint, so the next run continues where this one stopped. A dry
//! run reports what it would do and changes nothing (not even the checkpoint).
//! The summary holds counts only, and is both logged and returned.
//!
//! Every run that is not a dry run appends an audit record (`retention-run`,
//! actor `system`, counts only) to each site it visited, as soon as it is done
//! with that site: the site's trail shows when the job enforced its retention
//! and what it removed, even when it removed nothing. Orphans belong to no site
//! (their session is gone), so their count is in the summary only.

use std::collections::BTreeMap;

use chat_core::clock::{Clock, Timestamp};
use chat_core::domain::RetentionPolicy;
use chat_core::domain::{Actor, AuditAction, AuditRecord, SiteId};
use chat_core::policy::{self, AUDIT_RETENTION};
use chat_core::storage::{AuditStore, ConversationStore, RetentionStore, SiteStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The checkpoint's job name.
pub const JOB: &str = chat_core::storage::keys::RETENTION_JOB;
/// Work units a run does unless told otherwise.
pub const DEFAULT_BUDGET: u32 = 2000;

/// How a run was asked to behave (from the schedule's input, or its `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Report only.
    pub dry_run: bool,
    /// Work units for this run.
    pub budget: u32,
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The schedule's input is wrong.
    #[error("invalid job input: {0}")]
    Input(&'static str),
    /// The store failed; the scheduler retries the run.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Options {
    /// Reads `dryRun` and `budget` from the event (top level or `detail`).
    pub fn from_event(event: &Value) -> Result<Self, JobError> {
        let field = |name: &str| {
            event
                .get(name)
                .or_else(|| event.get("detail").and_then(|d| d.get(name)))
        };
        let dry_run = match field("dryRun") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(JobError::Input("dryRun must be true or false")),
        };
        let budget = match field("budget") {
            None | Some(Value::Null) => DEFAULT_BUDGET,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=100_000).contains(n))
                .map(|n| n as u32)
                .ok_or(JobError::Input("budget must be a whole number from 1 to 100000"))?,
        };
        Ok(Self { dry_run, budget })
    }
}

/// What a run did (or, in a dry run, would do). Counts only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Whether the whole table was covered (otherwise the next run continues).
    pub complete: bool,
    /// Sites visited.
    pub sites: u64,
    /// Conversations past their site's current retention.
    pub conversations_erased: u64,
    /// Items those conversations held.
    pub items_erased: u64,
    /// IPs past their site's IP retention.
    pub ips_removed: u64,
    /// Orphaned messages.
    pub orphans_deleted: u64,
    /// Work units used.
    pub budget_used: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
enum Checkpoint {
    /// Resume the site pass at this site (the sites before it are done).
    #[default]
    Sites,
    #[serde(rename_all = "camelCase")]
    SitesFrom { site: String },
    /// Resume the orphan sweep at this scan cursor.
    #[serde(rename_all = "camelCase")]
    Orphans { cursor: Option<String> },
}

/// The two per-site passes of the job.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// Conversations idle longer than the site's current retention.
    Conversations,
    /// IPs older than the site's IP retention.
    Ips,
}

struct Run<'a, S> {
    store: &'a S,
    options: Options,
    now: Timestamp,
    /// The deployment's ceiling on every site's policy.
    limit: RetentionPolicy,
    left: u32,
    summary: Summary,
    /// What this run did to the site being visited, for its audit record.
    site_counts: BTreeMap<String, u64>,
}

impl<S: SiteStore + RetentionStore + ConversationStore + AuditStore> Run<'_, S> {
    fn spend(&mut self, n: u32) {
        self.left = self.left.saturating_sub(n);
        self.summary.budget_used = self.options.budget - self.left;
    }

    async fn save(&self, checkpoint: Option<Checkpoint>) -> Result<(), StoreError> {
        if self.options.dry_run {
            return Ok(());
        }
        let value = checkpoint.map(|c| serde_json::to_string(&c).unwrap_or_default());
        self.store.put_checkpoint(JOB, value.as_deref()).await
    }

    /// Erases a conversation or removes an IP (or, in a dry run, counts it).
    async fn act(&mut self, pass: Pass, s: &chat_core::domain::Session) -> Result<(), StoreError> {
        match pass {
            Pass::Conversations => {
                self.summary.conversations_erased += 1;
                *self.site_counts.entry("conversationsErased".into()).or_default() += 1;
                if !self.options.dry_run {
                    let items = self.store.erase_session(&s.id, self.now).await?.total();
                    self.summary.items_erased += items;
                    *self.site_counts.entry("itemsErased".into()).or_default() += items;
                }
            }
            Pass::Ips => {
                if self.options.dry_run || self.store.remove_ip(&s.id).await? {
                    self.summary.ips_removed += 1;
                    *self.site_counts.entry("ipsRemoved".into()).or_default() += 1;
                }
            }
        }
        Ok(())
    }

    /// Appends the audit record of this run's work on `site` (not in a dry run,
    /// which changes nothing). Counts only: no session, visitor or IP.
    async fn audit_site(&mut self, site: &SiteId) -> Result<(), StoreError> {
        let mut counts = std::mem::take(&mut self.site_counts);
        if self.options.dry_run {
            return Ok(());
        }
        for kind in ["conversationsErased", "itemsErased", "ipsRemoved"] {
            counts.entry(kind.into()).or_default();
        }
        self.store
            .append_audit(&AuditRecord {
                id: chat_core::gdpr::audit_id(self.now),
                site_id: site.clone(),
                action: AuditAction::RetentionRun,
                subject_hash: None,
                actor: Actor::System,
                counts,
                at: self.now,
                expires_at: self.now.plus(AUDIT_RETENTION),
            })
            .await
    }

    /// The site pass from `from` on; `Some(site)` if the budget ran out at `site`.
    async fn sites(&mut self, from: Option<&str>) -> Result<Option<String>, StoreError> {
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.list_sites(cursor.as_deref(), 100).await?;
            let limit = self.limit;
            for site in page
                .items
                .into_iter()
                .filter(|s| from.is_none_or(|f| s.id.as_str() >= f))
                .map(|s| s.within(&limit))
            {
                self.summary.sites += 1;
                let passes = [
                    (
                        Pass::Conversations,
                        self.now.minus(policy::days(site.retention.conversation_days)),
                    ),
                    (
                        Pass::Ips,
                        self.now.minus(policy::days(site.retention.ip_retention_days)),
                    ),
                ];
                for (pass, cutoff) in passes {
                    let mut c: Option<String> = None;
                    loop {
                        if self.left == 0 {
                            self.audit_site(&site.id).await?;
                            return Ok(Some(site.id.to_string()));
                        }
                        let limit = self.left.min(100);
                        let p = match pass {
                            Pass::Conversations => {
                                self.store
                                    .conversations_inactive_before(&site.id, cutoff, c.as_deref(), limit)
                                    .await?
                            }
                            Pass::Ips => {
                                self.store
                                    .sessions_with_ip_before(&site.id, cutoff, c.as_deref(), limit)
                                    .await?
                            }
                        };
                        self.spend(p.items.len() as u32);
                        for s in &p.items {
                            self.act(pass, s).await?;
                        }
                        match p.next {
                            Some(n) => c = Some(n),
                            None => break,
                        }
                    }
                }
                self.audit_site(&site.id).await?;
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(None),
            }
        }
    }

    /// The orphan sweep from `cursor`; `Some(cursor)` if the budget ran out.
    async fn orphans(&mut self, mut cursor: Option<String>) -> Result<Option<Option<String>>, StoreError> {
        loop {
            if self.left == 0 {
                return Ok(Some(cursor));
            }
            let limit = self.left.min(100);
            let page = self.store.scan_orphans(cursor.as_deref(), limit, self.now).await?;
            // A scan page costs what it reads, whether or not it finds orphans.
            self.spend(limit);
            self.summary.orphans_deleted += if self.options.dry_run {
                page.items.len() as u64
            } else {
                self.store.delete_orphans(&page.items).await?
            };
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(None),
            }
        }
    }
}

/// Runs the job once.
pub async fn run<S>(
    store: &S,
    clock: &dyn Clock,
    limit: &RetentionPolicy,
    options: Options,
) -> Result<Summary, JobError>
where
    S: SiteStore + RetentionStore + ConversationStore + AuditStore,
{
    let checkpoint: Checkpoint = match store.get_checkpoint(JOB).await? {
        Some(raw) => serde_json::from_str(&raw).unwrap_or_default(),
        None => Checkpoint::Sites,
    };
    let mut run = Run {
        store,
        options,
        now: clock.now(),
        limit: *limit,
        left: options.budget,
        summary: Summary {
            dry_run: options.dry_run,
            ..Summary::default()
        },
        site_counts: BTreeMap::new(),
    };
    let orphan_cursor = match checkpoint {
        Checkpoint::Orphans { cursor } => cursor,
        Checkpoint::Sites | Checkpoint::SitesFrom { .. } => {
            let from = match &checkpoint {
                Checkpoint::SitesFrom { site } => Some(site.as_str()),
                _ => None,
            };
            if let Some(stopped_at) = run.sites(from).await? {
                run.save(Some(Checkpoint::SitesFrom { site: stopped_at })).await?;
                tracing::info!(summary = ?run.summary, "retention run paused");
                return Ok(run.summary);
            }
            None
        }
    };
    match run.orphans(orphan_cursor).await? {
        Some(cursor) => run.save(Some(Checkpoint::Orphans { cursor })).await?,
        None => {
            run.summary.complete = true;
            run.save(None).await?;
        }
    }
    tracing::info!(summary = ?run.summary, "retention run finished");
    Ok(run.summary)
}

impl Summary {
    /// The run as metric values (namespace `eurochat`, dimension `FunctionName`).
    /// `Complete` is 1 when the run finished a whole pass over the table: the
    /// template's `RetentionStalledAlarm` fires when no run completes one in a day.
    pub fn metric_values(&self) -> [(&'static str, f64); 6] {
        [
            ("RetentionRuns", 1.0),
            ("RetentionComplete", if self.complete { 1.0 } else { 0.0 }),
            ("ConversationsErased", self.conversations_erased as f64),
            ("ItemsErased", self.items_erased as f64),
            ("IpsRemoved", self.ips_removed as f64),
            ("OrphansDeleted", self.orphans_deleted as f64),
        ]
    }
}

/// What the job needs (the same shape as every function's `Deps`).
pub struct Deps<'a, S> {
    /// Sites, sessions, checkpoints, audit.
    pub store: &'a S,
    /// Time.
    pub clock: &'a dyn Clock,
    /// The deployment's policy ([`chat_core::config::Config::policy_limit`]).
    pub limit: &'a RetentionPolicy,
}

/// Handles the scheduled event: options from its input, the summary as the result.
pub async fn handle<S>(event: Value, deps: &Deps<'_, S>) -> Result<Summary, JobError>
where
    S: SiteStore + RetentionStore + ConversationStore + AuditStore,
{
    let options = Options::from_event(&event)?;
    run(deps.store, deps.clock, deps.limit, options).await
}
