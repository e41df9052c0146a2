//! The one rule for a customer's data: the caller may act on customer X (an admin, or one of X's own
//! users) and X is listed (not archived). [`scope`] is the only way to get a [`CustomerScope`], and the
//! functions that read or change a customer's data take one instead of a bare id, so code that skipped
//! the check does not compile:
//!
//! ```compile_fail
//! use portal_core::ids::CustomerId;
//! use portal_customers::scope::CustomerScope;
//!
//! // A scope cannot be made by hand; only `scope` (or, for the portal's own jobs, `system_scope`) makes one.
//! let scope = CustomerScope { id: CustomerId::generate() };
//! ```
//!
//! Anyone else gets the same 404 as for a customer (or object) that does not exist, so nobody learns
//! which customers exist.

use portal_core::ids::CustomerId;
use portal_core::{Error, Principal, ReadTx, Result};

use crate::service::{expect_listed, is_listed};

/// Proof that a customer is listed and that whoever holds this may act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerScope {
    id: CustomerId,
}

impl CustomerScope {
    pub fn id(&self) -> CustomerId {
        self.id
    }
}

/// The caller's scope on customer `id`; 404 `customer` otherwise.
pub fn scope(tx: &impl ReadTx, caller: &Principal, id: CustomerId) -> Result<CustomerScope> {
    scope_of(tx, caller, id, "customer")
}

/// The caller's scope on the customer owning an object (`what`: "invoice", "proposal"…); 404 naming
/// the object otherwise.
pub fn scope_of(tx: &impl ReadTx, caller: &Principal, owner: CustomerId, what: &str) -> Result<CustomerScope> {
    caller.authorize_customer(owner, what)?;
    listed(tx, owner, what)
}

/// The scope on `id` when it is listed; 404 naming `what` otherwise.
fn listed(tx: &impl ReadTx, id: CustomerId, what: &str) -> Result<CustomerScope> {
    match is_listed(tx, id)? {
        true => Ok(CustomerScope { id }),
        false => Err(Error::not_found(what)),
    }
}

/// Said before reading an object whose scope `scope_of` will then check: a customer user's scope can only
/// name its own customer, so the store fetches that customer's listing with the object (one statement
/// instead of two on PostgreSQL).
pub fn expect_scope_of(tx: &impl ReadTx, caller: &Principal) {
    if let (false, Some(own)) = (caller.is_admin(), caller.customer_id) {
        expect_listed(tx, own);
    }
}

/// The portal's own scope on a listed customer, for jobs, webhooks and ingest keys that act without a
/// signed-in caller; 404 `customer` when it is archived or gone.
pub fn system_scope(tx: &impl ReadTx, id: CustomerId) -> Result<CustomerScope> {
    listed(tx, id, "customer")
}
