//! Locks and the audit trail: the domain's `LockStore` and `AuditStore`.

use chrono::{DateTime, Utc};

use super::DieselStore;
use crate::deploy::{
    AuditEvent, AuditPage, AuditStore, Error, InstanceId, ListOptions, Lock, LockStore, LockTarget,
};

impl LockStore for DieselStore {
    fn acquire_lock(&self, _lock: &Lock) -> Result<Lock, Error> {
        todo!("store: acquire_lock")
    }

    fn release_lock(&self, _tenant_id: &str, _target: &LockTarget) -> Result<Option<Lock>, Error> {
        todo!("store: release_lock")
    }

    fn get_lock(&self, _tenant_id: &str, _target: &LockTarget) -> Result<Option<Lock>, Error> {
        todo!("store: get_lock")
    }

    fn lock_covering(
        &self,
        _tenant_id: &str,
        _instance_id: InstanceId,
    ) -> Result<Option<Lock>, Error> {
        todo!("store: lock_covering")
    }

    fn list_locks(&self, _tenant_id: &str) -> Result<Vec<Lock>, Error> {
        todo!("store: list_locks")
    }

    fn expire_locks(&self, _now: DateTime<Utc>) -> Result<Vec<Lock>, Error> {
        todo!("store: expire_locks")
    }

    fn release_pull_locks(
        &self,
        _tenant_id: &str,
        _repo: &str,
        _pull_request: u64,
    ) -> Result<Vec<Lock>, Error> {
        todo!("store: release_pull_locks")
    }
}

impl AuditStore for DieselStore {
    fn record_audit(&self, _event: &AuditEvent) -> Result<(), Error> {
        todo!("store: record_audit")
    }

    fn list_audit(
        &self,
        _tenant_id: &str,
        _instance_id: Option<InstanceId>,
        _options: &ListOptions,
    ) -> Result<AuditPage, Error> {
        todo!("store: list_audit")
    }
}
