//! The function's errors and the public codes they map to (`docs/errors.md`).

use http::StatusCode;
use wemint::content::ContentError;
use wemint::runtime::ApiError;
use wemint::subscriptions::SubscriptionsError;
use wemint::wechat::subscribe_templates::ConsentError;

/// Public error codes of `gatedContent`.
pub mod codes {
    /// No content with that id.
    pub const CONTENT_NOT_FOUND: &str = "CONTENT_NOT_FOUND";
    /// The caller has no subscription of that scope.
    pub const SUBSCRIPTION_NOT_FOUND: &str = "SUBSCRIPTION_NOT_FOUND";
    /// The subscription has run out: buy the plan again instead.
    pub const SUBSCRIPTION_EXPIRED: &str = "SUBSCRIPTION_EXPIRED";
    /// No plan with that id.
    pub const PLAN_NOT_FOUND: &str = "PLAN_NOT_FOUND";
    /// Not a change this subscription can make (same tier, other kind of plan).
    pub const PLAN_CHANGE_INVALID: &str = "PLAN_CHANGE_INVALID";
    /// No free trial here: the plan has none, or the subscriber has subscribed before.
    pub const TRIAL_UNAVAILABLE: &str = "TRIAL_UNAVAILABLE";
    /// Protected media could not be given a temp URL right now.
    pub const MEDIA_UNAVAILABLE: &str = "MEDIA_UNAVAILABLE";
    /// `subscribeGrant` named a template key (or id) this server does not send.
    pub const SUBSCRIBE_TEMPLATE_UNKNOWN: &str = "SUBSCRIBE_TEMPLATE_UNKNOWN";
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatedError {
    /// A content request failed (`content_error` maps it to the public codes).
    #[error(transparent)]
    Content(#[from] ContentError),
    /// A subscription change was refused (see the codes of [`SubscriptionsError`]'s variants).
    #[error(transparent)]
    Subscription(#[from] SubscriptionsError),
    /// A subscribe-consent report was refused.
    #[error(transparent)]
    Consent(#[from] ConsentError),
}

impl From<GatedError> for ApiError {
    fn from(e: GatedError) -> Self {
        let message = e.to_string();
        match e {
            GatedError::Content(e) => content_error(e, message),
            GatedError::Subscription(e) => subscription_error(e, message),
            GatedError::Consent(e) => consent_error(e, message),
        }
    }
}

/// The public code of a failed content request.
fn content_error(e: ContentError, message: String) -> ApiError {
    use ContentError as E;
    match e {
        E::NotFound(_) => ApiError::new(codes::CONTENT_NOT_FOUND, StatusCode::NOT_FOUND, message),
        E::BadRequest(_) => ApiError::bad_request(message),
        E::Media(source) => ApiError::new(
            codes::MEDIA_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            "protected media is unavailable right now; retry shortly",
        )
        .with_source(source),
        E::NoStorage => ApiError::internal(message),
        E::Store(source) => ApiError::internal(source),
    }
}

/// The public code of a refused subscription change.
fn subscription_error(e: SubscriptionsError, message: String) -> ApiError {
    use SubscriptionsError as E;
    match e {
        E::NotFound(_) => ApiError::new(
            codes::SUBSCRIPTION_NOT_FOUND,
            StatusCode::NOT_FOUND,
            message,
        ),
        E::Expired => ApiError::new(codes::SUBSCRIPTION_EXPIRED, StatusCode::CONFLICT, message),
        E::PlanNotFound(_) => ApiError::new(codes::PLAN_NOT_FOUND, StatusCode::NOT_FOUND, message),
        E::PlanChangeInvalid(_) => {
            ApiError::new(codes::PLAN_CHANGE_INVALID, StatusCode::CONFLICT, message)
        }
        E::TrialUnavailable(_) => {
            ApiError::new(codes::TRIAL_UNAVAILABLE, StatusCode::CONFLICT, message)
        }
        E::Forbidden(_) => ApiError::forbidden(message),
        E::BadRequest(_) => ApiError::bad_request(message),
        E::Store(source) => ApiError::internal(source),
    }
}

/// The public code of a refused subscribe-consent report.
fn consent_error(e: ConsentError, message: String) -> ApiError {
    match e {
        ConsentError::UnknownTemplate(_) => ApiError::new(
            codes::SUBSCRIBE_TEMPLATE_UNKNOWN,
            StatusCode::BAD_REQUEST,
            message,
        ),
        ConsentError::BadRequest(_) => ApiError::bad_request(message),
        ConsentError::Store(source) => ApiError::internal(source),
    }
}
