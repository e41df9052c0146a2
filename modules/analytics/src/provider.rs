//! Where a customer's figures come from. Customers with a Firebase project read them from the project's
//! Google Analytics 4 property when the portal holds a service account; every other customer's come from
//! the events sent to the portal. Both providers only count; `metrics` turns the counts into figures.

use std::sync::Arc;

use async_trait::async_trait;
use portal_core::Result;
use portal_customers::model::Customer;

use crate::firebase::FirebaseProvider;
use crate::local::LocalProvider;
use crate::metrics::Figures;
use crate::range::DateRange;

/// Which provider answered (the `X-Analytics-Source` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Firebase,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Firebase => "firebase",
        }
    }
}

#[async_trait]
pub trait AnalyticsProvider: Send + Sync {
    fn source(&self) -> Source;

    /// The counts of `customer`'s app over `range`.
    async fn figures(&self, customer: &Customer, range: DateRange) -> Result<Figures>;
}

/// The providers the portal is configured with.
#[derive(Clone)]
pub struct Providers {
    pub local: Arc<LocalProvider>,
    /// Present when `FIREBASE_CREDENTIALS` is set.
    pub firebase: Option<Arc<FirebaseProvider>>,
}

impl Providers {
    /// The provider of `customer`'s analytics.
    pub fn for_customer(&self, customer: &Customer) -> Arc<dyn AnalyticsProvider> {
        match (&self.firebase, &customer.firebase_project_id) {
            (Some(firebase), Some(_)) => Arc::clone(firebase) as Arc<dyn AnalyticsProvider>,
            _ => Arc::clone(&self.local) as Arc<dyn AnalyticsProvider>,
        }
    }
}
