//! What other modules keep per customer. Modules that depend on customers (proposals, billing, analytics)
//! register here, so deleting a customer asks them — without this crate depending on theirs — whether
//! the customer holds financial records (then it is archived, never deleted) and otherwise lets them
//! remove their data in the same transaction.

use std::sync::{Arc, RwLock};

use portal_core::ids::CustomerId;
use portal_core::WriteTx;
use portal_core::{Context, Result};

pub trait CustomerData: Send + Sync + 'static {
    /// Whether the customer holds records that must never be destroyed (invoices, accepted proposals).
    fn holds_financial_records(&self, tx: &WriteTx, customer: CustomerId) -> Result<bool>;

    /// Removes the module's data of a customer being deleted (only called when no module holds
    /// financial records for it).
    fn remove_customer(&self, tx: &WriteTx, customer: CustomerId) -> Result<()>;
}

/// The registered modules.
#[derive(Default)]
pub struct Dependents {
    modules: RwLock<Vec<Arc<dyn CustomerData>>>,
}

impl Dependents {
    /// The app's one registry.
    pub fn of(ctx: &Context) -> Arc<Dependents> {
        ctx.services.get_or_init(Dependents::default)
    }

    pub fn register(&self, module: Arc<dyn CustomerData>) {
        self.modules.write().unwrap_or_else(|p| p.into_inner()).push(module);
    }

    fn all(&self) -> Vec<Arc<dyn CustomerData>> {
        self.modules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn hold_financial_records(&self, tx: &WriteTx, customer: CustomerId) -> Result<bool> {
        for module in self.all() {
            if module.holds_financial_records(tx, customer)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn remove_customer(&self, tx: &WriteTx, customer: CustomerId) -> Result<()> {
        for module in self.all() {
            module.remove_customer(tx, customer)?;
        }
        Ok(())
    }
}
