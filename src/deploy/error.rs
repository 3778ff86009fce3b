//! The one error type of the domain. Every variant maps to one HTTP status in one place
//! (the server), and every message names the thing and what to do.

use super::InvalidTransition;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist for this tenant (rows of other tenants are never revealed).
    #[error("{kind} {id} was not found")]
    NotFound { kind: &'static str, id: String },
    /// The deployment is not in a state that allows this.
    #[error(transparent)]
    InvalidState(#[from] InvalidTransition),
    /// The request itself is wrong; the message says which part.
    #[error("{0}")]
    InvalidRequest(String),
    /// A uniqueness rule would be broken (a duplicate id, a second active release).
    #[error("{0}")]
    Conflict(String),
    /// Another's lock holds the instance; the message names holder, reason and expiry.
    #[error("{0}")]
    Locked(String),
    /// A freeze window is in force; the message names it and when it ends.
    #[error("{0}")]
    Frozen(String),
    /// The commit has not been deployed to the environment it is promoted from; the
    /// message says where to deploy it first.
    #[error("{0}")]
    PromotionOrder(String),
    /// An approval that does not count: the requester's own, or of a deployment that does
    /// not wait for approval; the message says who may approve.
    #[error("{0}")]
    NotApproved(String),
    /// The caller is known but may not do this here; the message says who may.
    #[error("{0}")]
    Forbidden(String),
    /// The database (or another dependency) cannot be reached now; try again later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a corrupt row; logged with details, shown to users without them.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}
