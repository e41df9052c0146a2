//! `/users/me` endpoints.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Tags};
use portal_auth::{AuthService, UserProfile};
use portal_core::{Auth, Error, JsonBody};

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
    /// the password needs `current_password`; a new password ends every other session.
    #[oai(path = "/me", method = "put")]
    async fn update_me(&self, auth: Auth, body: JsonBody<UpdateProfileRequest>) -> Result<Json<UserProfile>, Error> {
        let body = body.0;
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
    /// Time zone, locale and notification choices; partial like the profile.
    #[oai(path = "/me/settings", method = "put")]
    async fn update_settings(
        &self,
        auth: Auth,
        body: JsonBody<UpdateSettingsRequest>,
    ) -> Result<Json<UserProfile>, Error> {
        let body = body.0;
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
