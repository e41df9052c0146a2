//! Users of a customer, created by an admin: with a password, or invited by mail to set one.

use portal_auth::model::User;
use portal_auth::AuthService;
use portal_core::ids::CustomerId;
use portal_core::{Result, Role};

use crate::service;

/// How long an invitation link works.
const INVITATION_TTL_SECS: i64 = 72 * 3600;

pub(crate) struct NewCustomerUser {
    pub customer: CustomerId,
    /// Normalised and checked.
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    /// Checked against the password policy; none → invitation.
    pub password: Option<String>,
}

/// Creates the user; without a password, sends the invitation. When the mail cannot be sent, the user is
/// removed again and the error (503) returned, so the admin can simply retry.
pub(crate) async fn create(auth: &AuthService, new: NewCustomerUser) -> Result<User> {
    let hash = match new.password {
        Some(password) => Some(portal_auth::password::hash(password).await?),
        None => None,
    };
    let invite = hash.is_none();
    let mut user = portal_auth::service::new_user(new.email, new.name, Role::Customer, Some(new.customer), hash);
    user.phone = new.phone;
    let stored = user.clone();
    let token = auth
        .store()
        .write(move |tx| {
            service::get_listed(tx, stored.customer_id.unwrap_or(new.customer))?;
            portal_auth::users::insert(tx, &stored)?;
            match invite {
                true => portal_auth::service::create_reset_token(tx, stored.id, INVITATION_TTL_SECS).map(Some),
                false => Ok(None),
            }
        })
        .await?;
    let Some(token) = token else { return Ok(user) };
    let customer = user.customer_id.unwrap_or(new.customer);
    let company =
        auth.store().read_blocking(|tx| Ok(service::get(tx, customer)?.map(|c| c.company_name).unwrap_or_default()))?;
    let link = auth.link(&format!("/reset-password?token={token}"));
    let body = format!(
        "Hello {name},\n\nYou have been invited to the Portal account of {company}.\n\n\
         Set your password within 72 hours: {link}\n\nInvitation token: {token}\n",
        name = user.name
    );
    if let Err(e) = auth.notifier().send_email(&user.email, "Your Portal invitation", &body).await {
        let orphan = user.clone();
        auth.store()
            .write(move |tx| {
                portal_auth::service::remove_reset_token(tx, &token)?;
                portal_auth::users::delete(tx, &orphan)
            })
            .await?;
        return Err(e);
    }
    Ok(user)
}
