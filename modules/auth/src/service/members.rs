//! Users an admin adds to a customer: with a password they can sign in at once; without one they get an
//! invitation mail with a link to set it (the password-reset mechanism, valid 72 hours).

use portal_core::error::Validation;
use portal_core::ids::CustomerId;
use portal_core::WriteTx;
use portal_core::{Result, Role};

use super::{create_reset_token, new_user, remove_reset_token, AuthService};
use crate::model::User;
use crate::{password, users};

/// How long an invitation link works.
const INVITATION_TTL_SECS: i64 = 72 * 3600;

/// A user to add to a customer, as the admin gave it.
pub struct NewMember {
    pub customer_id: CustomerId,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    /// None: the user is invited to set one.
    pub password: Option<String>,
    /// The customer's name, for the invitation.
    pub company: String,
}

impl AuthService {
    /// Checks the fields and creates the user in one write with `precondition` (the caller's own check,
    /// e.g. that the customer is not archived); without a password, mails the invitation. When that mail
    /// cannot be sent the user is removed again and the error (503) returned, so the admin can retry.
    pub async fn add_member(
        &self,
        new: NewMember,
        precondition: impl Fn(&WriteTx) -> Result<()> + Send + 'static,
    ) -> Result<User> {
        let email = users::normalize_email(&new.email);
        let mut v = Validation::default();
        v.check("email", users::validate_email(&email));
        v.check("name", users::validate_name(&new.name));
        if let Some(phone) = &new.phone {
            v.check("phone", users::validate_phone(phone.trim()));
        }
        if let Some(password) = &new.password {
            v.check("password", password::check_policy(password, &email));
        }
        v.finish()?;
        let hash = match new.password {
            Some(password) => Some(password::hash(password).await?),
            None => None,
        };
        let invite = hash.is_none();
        let mut user = new_user(email, new.name.trim().to_string(), Role::Customer, Some(new.customer_id), hash);
        user.phone = new.phone.map(|p| p.trim().to_string());
        let stored = user.clone();
        let token = self
            .store
            .write(move |tx| {
                precondition(tx)?;
                users::insert(tx, &stored)?;
                match invite {
                    true => create_reset_token(tx, stored.id, INVITATION_TTL_SECS).map(Some),
                    false => Ok(None),
                }
            })
            .await?;
        let Some(token) = token else { return Ok(user) };
        let link = self.link(&format!("/reset-password?token={token}"));
        let body = format!(
            "Hello {name},\n\nYou have been invited to the Portal account of {company}.\n\n\
             Set your password within 72 hours: {link}\n\nInvitation token: {token}\n",
            name = user.name,
            company = new.company,
        );
        if let Err(e) = self.notifier.send_email(&user.email, "Your Portal invitation", &body).await {
            let orphan = user.clone();
            self.store
                .write(move |tx| {
                    remove_reset_token(tx, &token)?;
                    users::delete(tx, &orphan)
                })
                .await?;
            return Err(e);
        }
        Ok(user)
    }
}
