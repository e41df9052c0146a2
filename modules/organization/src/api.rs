//! `/organization`: the agency's profile and logo (admins).

use std::sync::Arc;

use poem_openapi::payload::{Binary, Json};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use portal_core::responses::NoContent;
use portal_core::{Admin, Error, PutBody, Result, Store, Timestamp};
use portal_documents::{Logo, Renderer};

use crate::model::{LogoFormat, Organization};
use crate::service::{self, OrganizationChange};

#[derive(Tags)]
enum OrganizationTag {
    /// The agency's own profile, shown on documents and mail
    Organization,
}

/// The agency's postal address.
#[derive(Debug, Clone, Object)]
#[oai(rename = "OrganizationAddress")]
pub struct AddressView {
    pub street: String,
    pub city: String,
    /// Empty where the country has none.
    pub state: String,
    /// Empty where the country uses none.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2; empty until set.
    pub country: String,
}

/// The uploaded logo.
#[derive(Debug, Clone, Object)]
pub struct LogoInfo {
    /// `image/png` or `image/svg+xml`.
    pub content_type: String,
    pub bytes: u64,
    /// Where to fetch it (admins).
    pub url: String,
    pub updated_at: Timestamp,
}

/// The agency's own details, printed on every invoice, proposal and mail. Empty until an admin fills it in.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Organization")]
pub struct OrganizationView {
    pub legal_name: String,
    pub address: AddressView,
    /// Tax or VAT id.
    #[oai(skip_serializing_if_is_none)]
    pub tax_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// E.164.
    #[oai(skip_serializing_if_is_none)]
    pub phone: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub website: Option<String>,
    /// Without spaces, upper case.
    #[oai(skip_serializing_if_is_none)]
    pub iban: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub bic: Option<String>,
    /// Payment instructions in the agency's own words.
    #[oai(skip_serializing_if_is_none)]
    pub bank_details: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub invoice_footer: Option<String>,
    /// BCP 47, e.g. `en-US`.
    pub default_locale: String,
    #[oai(skip_serializing_if_is_none)]
    pub logo: Option<LogoInfo>,
    #[oai(skip_serializing_if_is_none)]
    pub updated_at: Option<Timestamp>,
}

impl OrganizationView {
    fn of(org: &Organization, logo: Option<&crate::model::Logo>) -> Self {
        Self {
            legal_name: org.legal_name.clone(),
            address: AddressView {
                street: org.address.street.clone(),
                city: org.address.city.clone(),
                state: org.address.state.clone(),
                postal_code: org.address.postal_code.clone(),
                country: org.address.country.clone(),
            },
            tax_id: org.tax_id.clone(),
            email: org.email.clone(),
            phone: org.phone.clone(),
            website: org.website.clone(),
            iban: org.iban.clone(),
            bic: org.bic.clone(),
            bank_details: org.bank_details.clone(),
            invoice_footer: org.invoice_footer.clone(),
            default_locale: org.default_locale.clone(),
            logo: logo.map(|l| LogoInfo {
                content_type: l.format.content_type().to_string(),
                bytes: l.bytes.len() as u64,
                url: "/organization/logo".into(),
                updated_at: l.updated_at,
            }),
            updated_at: org.updated_at,
        }
    }
}

/// Address fields to change; left out fields keep their values.
#[derive(Debug, Object)]
#[oai(rename = "OrganizationAddressPatch", deny_unknown_fields)]
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

/// Fields to change; left out fields keep their values, `null` (or an empty string) clears an optional one.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct UpdateOrganizationRequest {
    #[oai(validator(max_length = 1024))]
    legal_name: Option<String>,
    address: Option<AddressPatch>,
    #[oai(validator(max_length = 200))]
    tax_id: MaybeUndefined<String>,
    #[oai(validator(max_length = 254))]
    email: MaybeUndefined<String>,
    #[oai(validator(max_length = 32))]
    phone: MaybeUndefined<String>,
    #[oai(validator(max_length = 200))]
    website: MaybeUndefined<String>,
    #[oai(validator(max_length = 64))]
    iban: MaybeUndefined<String>,
    #[oai(validator(max_length = 16))]
    bic: MaybeUndefined<String>,
    #[oai(validator(max_length = 4000))]
    bank_details: MaybeUndefined<String>,
    #[oai(validator(max_length = 8000))]
    invoice_footer: MaybeUndefined<String>,
    #[oai(validator(max_length = 16))]
    default_locale: Option<String>,
}

#[derive(ApiResponse)]
enum LogoFile {
    /// The bytes of the logo as uploaded; the profile's `logo.content_type` says which format they are.
    #[oai(status = 200)]
    File(Binary<Vec<u8>>),
}

pub struct OrganizationApi {
    store: Store,
    renderer: Arc<Renderer>,
}

impl OrganizationApi {
    pub fn new(store: Store, renderer: Arc<Renderer>) -> Self {
        Self { store, renderer }
    }

    fn view(&self) -> Result<OrganizationView> {
        self.store.read_blocking(|tx| Ok(OrganizationView::of(&service::get(tx)?, service::logo(tx)?.as_ref())))
    }
}

/// `bytes` back if documents can draw them (decoded as the PDFs decode them), or why not.
async fn decodable(renderer: Arc<Renderer>, format: LogoFormat, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let checked = tokio::task::spawn_blocking(move || {
        let logo = match format {
            LogoFormat::Png => Logo::Png(&bytes),
            LogoFormat::Svg => Logo::Svg(&bytes),
        };
        renderer.check_logo(logo).map(|()| bytes)
    })
    .await
    .map_err(|e| Error::internal(format!("the logo check stopped: {e}")))?;
    checked.map_err(|why| Error::invalid("logo", format!("the image cannot be read: {why}")))
}

fn patch(field: MaybeUndefined<String>) -> Option<Option<String>> {
    match field {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[OpenApi(prefix_path = "/organization", tag = "OrganizationTag::Organization")]
impl OrganizationApi {
    /// The agency's profile (admin)
    #[oai(path = "/", method = "get")]
    async fn get(&self, _admin: Admin) -> Result<Json<OrganizationView>> {
        Ok(Json(self.view()?))
    }

    /// Update the agency's profile (admin)
    ///
    /// Partial. The IBAN's check digits, the BIC's shape, the web address, the email and the phone number are
    /// checked; every bad field is named in one 422. Takes the profile as the GET gives it (`logo` and
    /// `updated_at` ignored when unchanged). Changes are recorded in the audit trail: the bank details are what
    /// customers pay to.
    #[oai(path = "/", method = "put")]
    async fn update(
        &self,
        _admin: Admin,
        body: PutBody<UpdateOrganizationRequest, OrganizationView>,
    ) -> Result<Json<OrganizationView>> {
        let body = body.into_inner(&self.view()?)?;
        let address = body.address;
        let change = OrganizationChange {
            legal_name: body.legal_name,
            street: address.as_ref().and_then(|a| a.street.clone()),
            city: address.as_ref().and_then(|a| a.city.clone()),
            state: address.as_ref().and_then(|a| a.state.clone()),
            postal_code: address.as_ref().and_then(|a| a.postal_code.clone()),
            country: address.as_ref().and_then(|a| a.country.clone()),
            tax_id: patch(body.tax_id),
            email: patch(body.email),
            phone: patch(body.phone),
            website: patch(body.website),
            iban: patch(body.iban),
            bic: patch(body.bic),
            bank_details: patch(body.bank_details),
            invoice_footer: patch(body.invoice_footer),
            default_locale: body.default_locale,
        };
        self.store.write(move |tx| service::update(tx, &change).map(drop)).await?;
        Ok(Json(self.view()?))
    }

    /// Upload the agency's logo (admin)
    ///
    /// The file's bytes (`application/octet-stream`, `image/png` or `image/svg+xml`), at most 512 KiB (413
    /// beyond): a PNG or an SVG, told apart by their content. A PNG must be whole and at most 4096 pixels a side; an SVG must have `<svg>`
    /// as its root and nothing that runs or fetches (scripts, event handlers, foreign objects, entities,
    /// outside links). Replaces the logo before.
    #[oai(path = "/logo", method = "put")]
    async fn set_logo(&self, _admin: Admin, body: Binary<Vec<u8>>) -> Result<Json<OrganizationView>> {
        let bytes = body.0;
        let format = crate::logo::format_of(&bytes).map_err(|why| Error::invalid("logo", why))?;
        service::check_logo(format, &bytes)?;
        let bytes = decodable(Arc::clone(&self.renderer), format, bytes).await?;
        self.store.write(move |tx| service::set_logo(tx, format, &bytes).map(drop)).await?;
        Ok(Json(self.view()?))
    }

    /// The agency's logo (admin)
    ///
    /// The uploaded file's bytes (`application/octet-stream`; the profile's `logo.content_type` names the
    /// format); 404 when none was uploaded.
    #[oai(path = "/logo", method = "get")]
    async fn logo(&self, _admin: Admin) -> Result<LogoFile> {
        let logo = self.store.read_blocking(service::logo)?.ok_or_else(|| Error::not_found("logo"))?;
        Ok(LogoFile::File(Binary(logo.bytes)))
    }

    /// Remove the agency's logo (admin)
    #[oai(path = "/logo", method = "delete")]
    async fn remove_logo(&self, _admin: Admin) -> Result<NoContent> {
        self.store.write(service::remove_logo).await?;
        Ok(NoContent::NoContent)
    }
}
