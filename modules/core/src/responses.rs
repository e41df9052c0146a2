//! Bodiless success responses shared by modules.

use poem_openapi::ApiResponse;

/// 204: done, nothing to return.
#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

/// 202: accepted; the work (a mail, an SMS) happens in the background.
#[derive(ApiResponse)]
pub enum Accepted {
    /// Accepted.
    #[oai(status = 202)]
    Accepted,
}
