//! Sites and agents in memory.

use async_trait::async_trait;

use super::{MemoryStore, page_after};
use crate::domain::{Agent, AgentId, Site, SiteId};
use crate::storage::{Page, SiteStore, StoreError};

#[async_trait]
impl SiteStore for MemoryStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        self.turn().await.sites.insert(site.id.to_string(), site.clone());
        Ok(())
    }

    async fn get_site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        Ok(self.turn().await.sites.get(id.as_str()).cloned())
    }

    async fn list_sites(&self, cursor: Option<&str>, limit: u32) -> Result<Page<Site>, StoreError> {
        let items = self
            .turn()
            .await
            .sites
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        page_after("sites", items, cursor, limit, false)
    }

    async fn put_agent(&self, agent: &Agent) -> Result<(), StoreError> {
        self.turn()
            .await
            .agents
            .insert((agent.site_id.to_string(), agent.id.to_string()), agent.clone());
        Ok(())
    }

    async fn get_agent(&self, site: &SiteId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        Ok(self
            .turn()
            .await
            .agents
            .get(&(site.to_string(), id.to_string()))
            .cloned())
    }

    async fn agent_and_site(
        &self,
        site: &SiteId,
        agent: &AgentId,
    ) -> Result<(Option<Agent>, Option<Site>), StoreError> {
        // One lock for both, as DynamoDB's one consistent BatchGetItem reads both at once.
        let g = self.lock();
        Ok((
            g.agents.get(&(site.to_string(), agent.to_string())).cloned(),
            g.sites.get(site.as_str()).cloned(),
        ))
    }
}
