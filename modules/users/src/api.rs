//! `/users/me` endpoints.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Tags};
use portal_auth::{AuthService, UserProfile, UserSettingsView};
use portal_core::{Auth, Error, PutBody};

use crate::service::{self, ProfileChange, SettingsChange};

#[derive(Tags)]
enum UsersTag {
    /// The signed-in user's own profile and settings
    Users,
}

/// Fields to change; left out fields keep their values.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct UpdateProfileRequest {
    #[oai(validator(max_length = 1024))]
    name: Option<String>,
    /// E.164; `null` removes it.
    #[oai(validator(max_length = 32))]
    phone: MaybeUndefined<String>,
    /// Needs `current_password`.
    #[oai(validator(max_length = 254))]
    email: Option<String>,
    /// Needs `current_password`; ends every other session.
    #[oai(validator(max_length = 1024))]
    new_password: Option<String>,
    #[oai(validator(max_length = 1024))]
    current_password: Option<String>,
}

/// Notification choices to change.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct NotificationChange {
    invoice_emails: Option<bool>,
    product_updates: Option<bool>,
    security_alerts_sms: Option<bool>,
}

/// Settings to change; left out fields keep their values.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct UpdateSettingsRequest {
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[oai(validator(max_length = 64))]
    timezone: Option<String>,
    /// BCP 47 tag, e.g. `en-US`.
    #[oai(validator(max_length = 16))]
    locale: Option<String>,
    notifications: Option<NotificationChange>,
}

/// Profile fields only an admin sets: changing them through `PUT /users/me` is forbidden, not invalid.
const PRIVILEGED: &[&str] = &["role", "customer_id"];

pub struct UsersApi {
    auth: Arc<AuthService>,
}

impl UsersApi {
    pub fn new(auth: Arc<AuthService>) -> Self {
        Self { auth }
    }
}

#[OpenApi(prefix_path = "/users", tag = "UsersTag::Users")]
impl UsersApi {
    /// My profile
    #[oai(path = "/me", method = "get")]
    async fn me(&self, auth: Auth) -> Result<Json<UserProfile>, Error> {
        Ok(Json((&self.auth.user(auth.0.user_id).await?).into()))
    }

    /// Update my profile
    ///
    /// Partial: fields left out keep their values, `phone: null` removes the phone. Changing the email or
    /// the password needs `current_password`; a new password ends every other session. Takes the profile
    /// as `GET /users/me` gives it: its other fields are ignored when unchanged; a changed `role` or
    /// `customer_id` → 403, another changed read-only field → 422 naming it.
    #[oai(path = "/me", method = "put")]
    async fn update_me(
        &self,
        auth: Auth,
        body: PutBody<UpdateProfileRequest, UserProfile>,
    ) -> Result<Json<UserProfile>, Error> {
        let current: UserProfile = (&self.auth.user(auth.0.user_id).await?).into();
        if let Some(field) = body.changed_read_only(&current).into_iter().find(|f| PRIVILEGED.contains(&f.as_str())) {
            return Err(Error::forbidden(format!("`{field}` is set by an admin, not through your profile")));
        }
        let body = body.into_inner(&current)?;
        let phone = match body.phone {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(p) => Some(Some(p)),
        };
        let change = ProfileChange {
            name: body.name,
            phone,
            email: body.email,
            new_password: body.new_password,
            current_password: body.current_password,
        };
        let user = service::update_profile(&self.auth, &auth.0, change).await?;
        Ok(Json((&user).into()))
    }

    /// Update my settings
    ///
    /// Time zone, locale and notification choices; partial like the profile. Takes the `settings` of
    /// `GET /users/me` back as they are.
    #[oai(path = "/me/settings", method = "put")]
    async fn update_settings(
        &self,
        auth: Auth,
        body: PutBody<UpdateSettingsRequest, UserSettingsView>,
    ) -> Result<Json<UserProfile>, Error> {
        let current = UserProfile::from(&self.auth.user(auth.0.user_id).await?).settings;
        let body = body.into_inner(&current)?;
        let n = body.notifications;
        let change = SettingsChange {
            timezone: body.timezone,
            locale: body.locale,
            invoice_emails: n.as_ref().and_then(|n| n.invoice_emails),
            product_updates: n.as_ref().and_then(|n| n.product_updates),
            security_alerts_sms: n.as_ref().and_then(|n| n.security_alerts_sms),
        };
        let user = service::update_settings(&self.auth, &auth.0, change).await?;
        Ok(Json((&user).into()))
    }
}
