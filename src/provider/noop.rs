//! The `noop` provider: records what it would do and succeeds. For trying the bot and
//! for tests of everything around the provider.

use async_trait::async_trait;

use crate::deploy::provider::{Provider, ProviderError, ReleaseSpec, RunContext};

#[derive(Debug, Default, Clone, Copy)]
pub struct NoopProvider;

#[async_trait]
impl Provider for NoopProvider {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn supports(&self, _strategy: &str) -> bool {
        true
    }

    async fn start(
        &self,
        run: &RunContext,
        slot: &str,
        release: &ReleaseSpec,
    ) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        run.log.system(format!(
            "noop: would start release v{} ({}) in slot {slot}",
            release.version, release.image
        ));
        Ok(())
    }

    async fn shift_traffic(
        &self,
        run: &RunContext,
        slot: &str,
        percent: u8,
    ) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        run.log.system(format!(
            "noop: would send {percent}% of traffic to slot {slot}"
        ));
        Ok(())
    }

    async fn retire(&self, run: &RunContext, slot: &str) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        run.log.system(format!("noop: would retire slot {slot}"));
        Ok(())
    }

    async fn plan(&self, run: &RunContext, release: &ReleaseSpec) -> Result<(), ProviderError> {
        if run.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled);
        }
        run.log.system(format!(
            "noop: nothing to plan; deploying v{} ({}) would change nothing",
            release.version, release.image
        ));
        Ok(())
    }
}
