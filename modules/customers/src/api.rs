//! `/customers` endpoints: request and response shapes, access checks, one store transaction each.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use portal_auth::service::NewMember;
use portal_auth::{AuthService, UserProfile};
use portal_core::idempotency;
use portal_core::ids::{CustomerId, UserId};
use portal_core::money::to_major;
use portal_core::{
    Admin, Auth, JsonBody, JsonObject, ListResponse, PageRequest, PutBody, Result, Role, Store, Timestamp,
};
use serde::Serialize;

use crate::dependents::Dependents;
use crate::model::{BillingFrequency, BillingSettings, BillingSettingsId, Customer, CustomerStatus, PaymentMethod};
use crate::scope::scope;
use crate::service::{self, AddressChange, BillingChange, CustomerChange, CustomerFilter, CustomerRecord, Removal};

#[derive(Tags)]
enum CustomersTag {
    /// Customer accounts, their billing settings and their users
    Customers,
}

/// A postal address.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Address")]
pub struct AddressView {
    pub street: String,
    pub city: String,
    /// Empty where the country has none.
    pub state: String,
    /// Empty where the country uses none.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// How and when a customer is billed.
#[derive(Debug, Clone, Object)]
#[oai(rename = "BillingSettings")]
pub struct BillingSettingsView {
    pub id: BillingSettingsId,
    pub customer_id: CustomerId,
    pub payment_method: PaymentMethod,
    pub billing_frequency: BillingFrequency,
    /// In `currency`, with at most its minor-unit decimals.
    pub monthly_fee: f64,
    /// ISO 4217.
    pub currency: String,
    /// Day of the month invoices are issued (clamped to the month's last day).
    pub billing_day: u8,
    /// Charge the saved payment method when an invoice is issued.
    pub auto_charge: bool,
    /// Percent, at most 4 decimals.
    pub tax_rate: f64,
    /// Days from issue to due date.
    pub payment_terms_days: u16,
    #[oai(skip_serializing_if_is_none)]
    pub stripe_payment_method_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub additional_details: Option<JsonObject>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&BillingSettings> for BillingSettingsView {
    fn from(b: &BillingSettings) -> Self {
        Self {
            id: b.id,
            customer_id: b.customer_id,
            payment_method: b.payment_method,
            billing_frequency: b.billing_frequency,
            monthly_fee: to_major(b.monthly_fee, b.currency),
            currency: b.currency.to_string(),
            billing_day: b.billing_day,
            auto_charge: b.auto_charge,
            tax_rate: b.tax_rate.percent(),
            payment_terms_days: b.payment_terms_days,
            stripe_payment_method_id: b.stripe_payment_method_id.clone(),
            additional_details: b.additional_details.as_deref().and_then(|t| serde_json::from_str(t).ok()),
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// A customer account (a company) with its billing settings.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Customer")]
pub struct CustomerView {
    pub id: CustomerId,
    /// Contact person.
    pub name: String,
    pub company_name: String,
    pub status: CustomerStatus,
    pub billing_email: String,
    /// E.164.
    #[oai(skip_serializing_if_is_none)]
    pub phone: Option<String>,
    pub address: AddressView,
    #[oai(skip_serializing_if_is_none)]
    pub firebase_app_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub firebase_project_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub stripe_customer_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set on archived customers (only in `GET /customers?archived=true`).
    #[oai(skip_serializing_if_is_none)]
    pub archived_at: Option<Timestamp>,
    pub billing_settings: BillingSettingsView,
}

impl From<&CustomerRecord> for CustomerView {
    fn from(r: &CustomerRecord) -> Self {
        let c: &Customer = &r.customer;
        Self {
            id: c.id,
            name: c.name.clone(),
            company_name: c.company_name.clone(),
            status: c.status,
            billing_email: c.billing_email.clone(),
            phone: c.phone.clone(),
            address: AddressView {
                street: c.address.street.clone(),
                city: c.address.city.clone(),
                state: c.address.state.clone(),
                postal_code: c.address.postal_code.clone(),
                country: c.address.country.clone(),
            },
            firebase_app_id: c.firebase_app_id.clone(),
            firebase_project_id: c.firebase_project_id.clone(),
            stripe_customer_id: c.stripe_customer_id.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            archived_at: c.archived_at,
            billing_settings: (&r.billing).into(),
        }
    }
}

/// The address of a new customer.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct NewAddress {
    #[oai(validator(max_length = 200))]
    street: String,
    #[oai(validator(max_length = 100))]
    city: String,
    #[oai(validator(max_length = 100))]
    state: Option<String>,
    #[oai(validator(max_length = 16))]
    postal_code: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[oai(validator(max_length = 2))]
    country: String,
}

/// Address fields to change; left out fields keep their values.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct AddressPatch {
    #[oai(validator(max_length = 200))]
    street: Option<String>,
    #[oai(validator(max_length = 100))]
    city: Option<String>,
    #[oai(validator(max_length = 100))]
    state: Option<String>,
    #[oai(validator(max_length = 16))]
    postal_code: Option<String>,
    #[oai(validator(max_length = 2))]
    country: Option<String>,
}

/// Billing settings to set; left out fields keep their values, `null` clears an optional field. A new
/// customer's defaults: manual, monthly, fee 0, USD, day 1, no auto charge, tax 0, 30 days to pay.
#[derive(Debug, Clone, Default, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct BillingSettingsInput {
    payment_method: Option<PaymentMethod>,
    billing_frequency: Option<BillingFrequency>,
    /// In `currency`, with at most its minor-unit decimals.
    monthly_fee: Option<f64>,
    /// ISO 4217.
    #[oai(validator(max_length = 3))]
    currency: Option<String>,
    /// 1–31.
    billing_day: Option<u32>,
    auto_charge: Option<bool>,
    /// Percent, 0–100, at most 4 decimals.
    tax_rate: Option<f64>,
    /// 0–365.
    payment_terms_days: Option<u32>,
    #[oai(validator(max_length = 255))]
    stripe_payment_method_id: MaybeUndefined<String>,
    /// Any JSON object up to 16 KiB.
    additional_details: MaybeUndefined<JsonObject>,
}

impl From<&BillingSettingsInput> for BillingChange {
    fn from(b: &BillingSettingsInput) -> Self {
        Self {
            payment_method: b.payment_method,
            billing_frequency: b.billing_frequency,
            monthly_fee: b.monthly_fee,
            currency: b.currency.clone(),
            billing_day: b.billing_day,
            auto_charge: b.auto_charge,
            tax_rate: b.tax_rate,
            payment_terms_days: b.payment_terms_days,
            stripe_payment_method_id: patch(&b.stripe_payment_method_id),
            additional_details: patch(&b.additional_details),
        }
    }
}

/// A new customer.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct CreateCustomerRequest {
    /// Contact person, 1–200 characters.
    #[oai(validator(max_length = 1024))]
    name: String,
    /// 1–200 characters.
    #[oai(validator(max_length = 1024))]
    company_name: String,
    status: Option<CustomerStatus>,
    #[oai(validator(max_length = 254))]
    billing_email: String,
    /// E.164.
    #[oai(validator(max_length = 32))]
    phone: Option<String>,
    address: NewAddress,
    #[oai(validator(max_length = 128))]
    firebase_app_id: Option<String>,
    #[oai(validator(max_length = 64))]
    firebase_project_id: Option<String>,
    #[oai(validator(max_length = 255))]
    stripe_customer_id: Option<String>,
    billing_settings: Option<BillingSettingsInput>,
}

/// Customer fields to change; left out fields keep their values, `null` clears an optional field.
/// Customer users may change only name, phone, address and billing_email.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct UpdateCustomerRequest {
    #[oai(validator(max_length = 1024))]
    name: Option<String>,
    #[oai(validator(max_length = 1024))]
    company_name: Option<String>,
    status: Option<CustomerStatus>,
    #[oai(validator(max_length = 254))]
    billing_email: Option<String>,
    #[oai(validator(max_length = 32))]
    phone: MaybeUndefined<String>,
    address: Option<AddressPatch>,
    #[oai(validator(max_length = 128))]
    firebase_app_id: MaybeUndefined<String>,
    #[oai(validator(max_length = 64))]
    firebase_project_id: MaybeUndefined<String>,
    #[oai(validator(max_length = 255))]
    stripe_customer_id: MaybeUndefined<String>,
}

/// A new user of a customer: with `password` it can sign in at once; without, it gets an invitation
/// mail with a link to set its password (valid 72 hours).
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct CreateCustomerUserRequest {
    #[oai(validator(max_length = 254))]
    email: String,
    #[oai(validator(max_length = 1024))]
    name: String,
    /// E.164.
    #[oai(validator(max_length = 32))]
    phone: Option<String>,
    /// 10–256 characters, not a common password.
    #[oai(validator(max_length = 1024))]
    password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
enum DeletionResult {
    /// Removed with its users and settings (it held no financial records).
    Deleted,
    /// Kept but hidden, its users unable to sign in (it holds invoices or accepted proposals);
    /// `POST /customers/{id}/restore` brings it back.
    Archived,
}

/// What deleting a customer did.
#[derive(Debug, Clone, Object)]
struct CustomerDeletion {
    id: CustomerId,
    result: DeletionResult,
    #[oai(skip_serializing_if_is_none)]
    archived_at: Option<Timestamp>,
}

#[derive(ApiResponse)]
enum CreatedCustomer {
    /// Created (or, for a repeated `Idempotency-Key`, the first answer again).
    #[oai(status = 201)]
    Created(Json<CustomerView>),
}

#[derive(ApiResponse)]
enum CreatedUser {
    /// Created; an invitation mail went out when no password was given.
    #[oai(status = 201)]
    Created(Json<UserProfile>),
}

pub struct CustomersApi {
    store: Store,
    auth: Arc<AuthService>,
    dependents: Arc<Dependents>,
}

impl CustomersApi {
    pub fn new(store: Store, auth: Arc<AuthService>, dependents: Arc<Dependents>) -> Self {
        Self { store, auth, dependents }
    }
}

#[OpenApi(prefix_path = "/customers", tag = "CustomersTag::Customers")]
impl CustomersApi {
    /// Create a customer (admin)
    ///
    /// Creates the customer and its billing settings. Honours `Idempotency-Key`: the same key and body
    /// within 24 h answer the first result again; the same key with another body → 409.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        admin: Admin,
        body: JsonBody<CreateCustomerRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: idempotency::IdempotencyKey,
    ) -> Result<CreatedCustomer> {
        let body = body.into_inner()?;
        let claim =
            idempotency::begin(&self.store, admin.0.user_id, "POST /customers", &idempotency_key, &body).await?;
        if let Some((_, view)) = claim.replayed::<CustomerView>()? {
            return Ok(CreatedCustomer::Created(Json(view)));
        }
        let address = &body.address;
        let change = CustomerChange {
            name: Some(body.name.clone()),
            company_name: Some(body.company_name.clone()),
            status: body.status,
            billing_email: Some(body.billing_email.clone()),
            phone: body.phone.clone().map(Some),
            address: Some(AddressChange {
                street: Some(address.street.clone()),
                city: Some(address.city.clone()),
                state: address.state.clone(),
                postal_code: address.postal_code.clone(),
                country: Some(address.country.clone()),
            }),
            firebase_app_id: body.firebase_app_id.clone().map(Some),
            firebase_project_id: body.firebase_project_id.clone().map(Some),
            stripe_customer_id: body.stripe_customer_id.clone().map(Some),
        };
        let billing = body.billing_settings.as_ref().map(BillingChange::from).unwrap_or_default();
        let recorder = claim.clone();
        let view = self
            .store
            .write(move |tx| {
                let view = CustomerView::from(&service::create(tx, &change, &billing)?);
                recorder.complete(tx, 201, &view)?;
                Ok(view)
            })
            .await?;
        drop(claim);
        Ok(CreatedCustomer::Created(Json(view)))
    }

    /// List customers (admin)
    ///
    /// Newest first, paged by `limit` (1–200, default 50) and `cursor` (from `X-Next-Cursor`). Filters:
    /// `status`, `q` (substring of name, company name or billing email, at least 2 characters) and
    /// `archived=true` for archived customers.
    #[oai(path = "/", method = "get")]
    #[allow(clippy::too_many_arguments)] // one argument per documented query parameter
    async fn list(
        &self,
        _admin: Admin,
        req: &Request,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
        status: Query<Option<CustomerStatus>>,
        q: Query<Option<String>>,
        archived: Query<Option<bool>>,
    ) -> Result<ListResponse<CustomerView>> {
        let page = PageRequest::<CustomerId>::parse(limit.0, cursor.0.as_deref())?;
        let filter = CustomerFilter { status: status.0, query: q.0, archived: archived.0.unwrap_or(false) };
        let fetch = page.fetch();
        let rows = self.store.read(move |tx| service::list(tx, &filter, page.after, fetch)).await?;
        let views = rows.iter().map(CustomerView::from).collect();
        Ok(ListResponse::new(req, views, page.limit, |c| c.id.to_string()))
    }

    /// My customer (customer users)
    #[oai(path = "/me", method = "get")]
    async fn me(&self, auth: Auth) -> Result<Json<CustomerView>> {
        let id = auth.0.own_customer()?;
        let caller = auth.0;
        let record = self.store.read_blocking(|tx| service::record(tx, &scope(tx, &caller, id)?))?;
        Ok(Json((&record).into()))
    }

    /// Get a customer (admin or its users)
    #[oai(path = "/:customer_id", method = "get")]
    async fn get(&self, auth: Auth, customer_id: Path<CustomerId>) -> Result<Json<CustomerView>> {
        let caller = auth.0;
        let record = self.store.read_blocking(|tx| service::record(tx, &scope(tx, &caller, customer_id.0)?))?;
        Ok(Json((&record).into()))
    }

    /// Update a customer (admin or its users)
    ///
    /// Partial. Customer users may change only the contact fields (name, phone, address, billing_email);
    /// another field with a new value → 403 naming it. Takes the customer as the GET gives it: read-only
    /// fields (`id`, `billing_settings`, `created_at` …) are ignored when unchanged, a changed one → 422
    /// naming it.
    #[oai(path = "/:customer_id", method = "put")]
    async fn update(
        &self,
        auth: Auth,
        customer_id: Path<CustomerId>,
        body: PutBody<UpdateCustomerRequest, CustomerView>,
    ) -> Result<Json<CustomerView>> {
        // A customer the caller cannot see is a 404 whatever the body says.
        let current = self.store.read_blocking(|tx| service::record(tx, &scope(tx, &auth.0, customer_id.0)?))?;
        let body = body.into_inner(&CustomerView::from(&current))?;
        let change = CustomerChange {
            name: body.name,
            company_name: body.company_name,
            status: body.status,
            billing_email: body.billing_email,
            phone: patch(&body.phone),
            address: body.address.map(|a| AddressChange {
                street: a.street,
                city: a.city,
                state: a.state,
                postal_code: a.postal_code,
                country: a.country,
            }),
            firebase_app_id: patch(&body.firebase_app_id),
            firebase_project_id: patch(&body.firebase_project_id),
            stripe_customer_id: patch(&body.stripe_customer_id),
        };
        let caller = auth.0;
        let record = self
            .store
            .write(move |tx| service::update(tx, &caller, &scope(tx, &caller, customer_id.0)?, &change))
            .await?;
        Ok(Json((&record).into()))
    }

    /// Delete a customer (admin)
    ///
    /// No financial record is ever destroyed: a customer with invoices or accepted proposals is archived
    /// (hidden from lists and gets, its users signed out and unable to sign in, everything kept;
    /// `POST /customers/{id}/restore` brings it back). A customer with none is deleted with its users,
    /// billing settings and draft data. The answer says which happened.
    #[oai(path = "/:customer_id", method = "delete")]
    async fn delete(&self, _admin: Admin, customer_id: Path<CustomerId>) -> Result<Json<CustomerDeletion>> {
        let dependents = Arc::clone(&self.dependents);
        let id = customer_id.0;
        let removal = self.store.write(move |tx| service::remove(tx, id, &dependents)).await?;
        let (result, archived_at) = match removal {
            Removal::Deleted => (DeletionResult::Deleted, None),
            Removal::Archived(at) => (DeletionResult::Archived, Some(at)),
        };
        Ok(Json(CustomerDeletion { id, result, archived_at }))
    }

    /// Restore an archived customer (admin)
    ///
    /// Lists it again and lets its users sign in again.
    #[oai(path = "/:customer_id/restore", method = "post")]
    async fn restore(&self, _admin: Admin, customer_id: Path<CustomerId>) -> Result<Json<CustomerView>> {
        let record = self.store.write(move |tx| service::restore(tx, customer_id.0)).await?;
        Ok(Json((&record).into()))
    }

    /// Get a customer's billing settings (admin or its users)
    #[oai(path = "/:customer_id/billing", method = "get")]
    async fn billing(&self, auth: Auth, customer_id: Path<CustomerId>) -> Result<Json<BillingSettingsView>> {
        let caller = auth.0;
        let record = self.store.read_blocking(|tx| service::record(tx, &scope(tx, &caller, customer_id.0)?))?;
        Ok(Json((&record.billing).into()))
    }

    /// Update a customer's billing settings (admin)
    ///
    /// Partial. Changing `currency` of a non-zero fee needs the fee restated in the new currency. Takes
    /// the settings as the GET gives them (`id`, `customer_id` and the times ignored when unchanged).
    #[oai(path = "/:customer_id/billing", method = "put")]
    async fn update_billing(
        &self,
        admin: Admin,
        customer_id: Path<CustomerId>,
        body: PutBody<BillingSettingsInput, BillingSettingsView>,
    ) -> Result<Json<BillingSettingsView>> {
        let caller = admin.0;
        let current = self.store.read_blocking(|tx| service::record(tx, &scope(tx, &caller, customer_id.0)?))?;
        let change = BillingChange::from(&body.into_inner(&BillingSettingsView::from(&current.billing))?);
        let settings = self
            .store
            .write(move |tx| service::update_billing(tx, &scope(tx, &caller, customer_id.0)?, &change))
            .await?;
        Ok(Json((&settings).into()))
    }

    /// Create a user of a customer (admin)
    ///
    /// Emails are unique across the portal (409). Without `password`, the user gets an invitation mail
    /// with a link to set one (valid 72 hours).
    #[oai(path = "/:customer_id/users", method = "post")]
    async fn create_user(
        &self,
        _admin: Admin,
        customer_id: Path<CustomerId>,
        body: JsonBody<CreateCustomerUserRequest>,
    ) -> Result<CreatedUser> {
        let body = body.into_inner()?;
        let customer = customer_id.0;
        let company = self
            .store
            .read_blocking(|tx| Ok(service::get(tx, customer)?.map(|c| c.company_name).unwrap_or_default()))?;
        let new = NewMember {
            customer_id: customer,
            email: body.email,
            name: body.name,
            phone: body.phone,
            password: body.password,
            company,
        };
        let user = self.auth.add_member(new, move |tx| service::get_listed(tx, customer).map(drop)).await?;
        Ok(CreatedUser::Created(Json((&user).into())))
    }

    /// List a customer's users (admin or its users)
    ///
    /// Newest first, paged like every list.
    #[oai(path = "/:customer_id/users", method = "get")]
    async fn list_users(
        &self,
        req: &Request,
        auth: Auth,
        customer_id: Path<CustomerId>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse<UserProfile>> {
        let page = PageRequest::<UserId>::parse(limit.0, cursor.0.as_deref())?;
        let caller = auth.0;
        let fetch = page.fetch();
        let users = self
            .store
            .read(move |tx| {
                let scope = scope(tx, &caller, customer_id.0)?;
                portal_auth::users::page_by_customer(tx, scope.id(), page.after, fetch)
            })
            .await?;
        let profiles: Vec<UserProfile> = users.iter().filter(|u| u.role == Role::Customer).map(Into::into).collect();
        Ok(ListResponse::new(req, profiles, page.limit, |u| u.id.to_string()))
    }
}

/// A `MaybeUndefined` field as a change: left out → keep, `null` → clear, a value → set.
fn patch<T: Clone>(field: &MaybeUndefined<T>) -> Option<Option<T>> {
    match field {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v.clone())),
    }
}
