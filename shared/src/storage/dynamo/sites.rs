//! Sites and agents: items in the site's partition; GSI1 lists every site.

use async_trait::async_trait;

use super::DynamoStore;
use super::item::{Envelope, attr_str, encode, key, record};
use super::query::QuerySpec;
use crate::domain::{Agent, AgentId, Site, SiteId};
use crate::storage::keys::{self, kind};
use crate::storage::{Page, SiteStore, StoreError};

#[async_trait]
impl SiteStore for DynamoStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let mut env = Envelope::new(keys::site_pk(&site.id), keys::SITE_SK, kind::SITE, site.clone());
        env.gsi1pk = Some(keys::SITES_GSI1PK.to_owned());
        env.gsi1sk = Some(site.id.to_string());
        self.put(encode(&env)?).await
    }

    async fn get_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        self.get(key(keys::site_pk(id), keys::SITE_SK), false)
            .await?
            .map(|i| record("GetItem", i))
            .transpose()
    }

    async fn list_sites(&self, cursor: Option<&str>, limit: u32) -> Result<Page<Site>, StoreError> {
        let q = QuerySpec::index(keys::GSI1, keys::SITES_GSI1PK.to_owned());
        self.records_page(&q, cursor, limit).await
    }

    async fn put_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        let env = Envelope::new(
            keys::site_pk(&agent.site_id),
            keys::agent_sk(&agent.id),
            kind::AGENT,
            agent.clone(),
        );
        self.put(encode(&env)?).await
    }

    async fn get_agent(&self, site: &SiteId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        self.get(key(keys::site_pk(site), keys::agent_sk(id)), false)
            .await?
            .map(|i| record("GetItem", i))
            .transpose()
    }

    async fn agent_and_site(
        &self,
        site: &SiteId,
        agent: &AgentId,
    ) -> Result<(Option<Agent>, Option<Site>), StoreError> {
        let pk = keys::site_pk(site);
        let items = self
            .batch_get(vec![key(pk.clone(), keys::agent_sk(agent)), key(pk, keys::SITE_SK)])
            .await?;
        let (mut found_agent, mut found_site) = (None, None);
        for item in items {
            if attr_str(&item, keys::SK) == Some(keys::SITE_SK) {
                found_site = Some(record("BatchGetItem", item)?);
            } else {
                found_agent = Some(record("BatchGetItem", item)?);
            }
        }
        Ok((found_agent, found_site))
    }
}
