//! Stored customers and billing settings, and the enums the API shares with them.

use poem_openapi::Enum;
use portal_core::money::TaxRate;
use portal_core::{ids::CustomerId, Currency, Record, Timestamp};
use serde::{Deserialize, Serialize};

portal_core::id_type!(
    /// A customer's billing settings.
    BillingSettingsId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
/// Where a customer account stands; a new customer starts as `onboarding` unless told otherwise.
pub enum CustomerStatus {
    Active,
    Inactive,
    Onboarding,
    Pending,
}

impl CustomerStatus {
    pub const ALL: [CustomerStatus; 4] = [Self::Active, Self::Inactive, Self::Onboarding, Self::Pending];

    /// Key byte of the status index.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::Active => 1,
            Self::Inactive => 2,
            Self::Onboarding => 3,
            Self::Pending => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum PaymentMethod {
    CreditCard,
    BankTransfer,
    Paypal,
    Stripe,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum BillingFrequency {
    Monthly,
    Quarterly,
    Annual,
    OneTime,
}

impl BillingFrequency {
    /// Months one billing period spans; none for one-time billing, which never recurs.
    pub fn months(self) -> Option<u32> {
        match self {
            Self::Monthly => Some(1),
            Self::Quarterly => Some(3),
            Self::Annual => Some(12),
            Self::OneTime => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    pub company_name: String,
    pub status: CustomerStatus,
    /// Lower case.
    pub billing_email: String,
    pub phone: Option<String>,
    pub address: Address,
    pub firebase_app_id: Option<String>,
    pub firebase_project_id: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set while the customer is archived: hidden, its users cannot sign in, restorable by an admin.
    #[serde(default)]
    pub archived_at: Option<Timestamp>,
}

impl Record for Customer {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BillingSettings {
    pub id: BillingSettingsId,
    pub customer_id: CustomerId,
    pub payment_method: PaymentMethod,
    pub billing_frequency: BillingFrequency,
    /// Minor units of `currency`.
    pub monthly_fee: i64,
    pub currency: Currency,
    /// Day of the month invoices are issued (1–31; clamped to the month's last day).
    pub billing_day: u8,
    pub auto_charge: bool,
    pub tax_rate: TaxRate,
    pub payment_terms_days: u16,
    pub stripe_payment_method_id: Option<String>,
    /// Compact JSON text of an object.
    pub additional_details: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Record for BillingSettings {}

impl BillingSettings {
    /// The defaults a new customer starts with: manual monthly billing in USD on the 1st, no fee, no tax,
    /// 30 days to pay, no automatic charging.
    pub fn defaults(customer_id: CustomerId, now: Timestamp) -> Self {
        Self {
            id: BillingSettingsId::generate(),
            customer_id,
            payment_method: PaymentMethod::Manual,
            billing_frequency: BillingFrequency::Monthly,
            monthly_fee: 0,
            currency: Currency::USD,
            billing_day: 1,
            auto_charge: false,
            tax_rate: TaxRate::default(),
            payment_terms_days: 30,
            stripe_payment_method_id: None,
            additional_details: None,
            created_at: now,
            updated_at: now,
        }
    }
}
