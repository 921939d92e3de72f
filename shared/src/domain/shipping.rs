//! Shipping of physical goods: the shipping record an order carries, what an admin's
//! shipment may say, the deadline and the upload retry schedule. Pure: commerce loads the
//! order, asks these rules, and writes with a conditional update on `shipping.state`.
//!
//! The order's money `status` and its `shipping.state` are separate: a shipped order can
//! still be refunded (in part or in full), and a refund does not unship it.

use serde::{Deserialize, Serialize};

use super::order::OrderLine;

/// Where the goods are, as wemint and the platform know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShippingState {
    /// Paid, waiting for the merchant to ship.
    Awaiting,
    /// Handed to the carrier / ready for pickup / delivered virtually.
    Shipped,
    /// The platform reports that receipt was confirmed (by the buyer or automatically).
    Received,
    /// The platform reports the transaction complete: the funds are settled.
    Settled,
}

impl ShippingState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Awaiting => "awaiting",
            Self::Shipped => "shipped",
            Self::Received => "received",
            Self::Settled => "settled",
        }
    }

    /// The states a move to `self` may start from (the update's filter).
    pub fn allowed_from(self) -> &'static [ShippingState] {
        use ShippingState::*;
        match self {
            Awaiting => &[],
            Shipped => &[Awaiting],
            Received => &[Shipped],
            Settled => &[Shipped, Received],
        }
    }
}

/// State of the report to the platform (`upload_shipping_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Not sent yet (or a send was interrupted): reconcile sends it.
    Pending,
    /// Accepted by the platform.
    Done,
    /// Failed in a way that may pass later: reconcile re-sends it at `nextAt`.
    Failed,
    /// Refused for good (e.g. the re-ship is used up): needs a person in MP admin.
    Rejected,
}

/// One package as stored and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippedPackage {
    /// Carrier code (`delivery_id`, e.g. `SF`), express only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub express_company: Option<String>,
    /// Waybill number, express only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_no: Option<String>,
}

/// The report to the platform and its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadStatus {
    /// Where it is.
    pub state: UploadState,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// Earliest time reconcile sends it again (pending / failed).
    #[serde(default)]
    pub next_at: i64,
    /// When the platform accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<i64>,
    /// The platform's last errcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
    /// The last failure, for the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl UploadStatus {
    /// A report not sent yet; reconcile sends it from `next_at` on if nobody did.
    pub fn pending(next_at: i64) -> Self {
        UploadStatus {
            state: UploadState::Pending,
            attempts: 0,
            next_at,
            uploaded_at: None,
            errcode: None,
            last_error: None,
        }
    }
}

/// The `shipping` field of an order with physical goods (or a virtual shipment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipping {
    /// Where the goods are.
    pub state: ShippingState,
    /// Ship by this time (Unix seconds): the payment time plus the shipping window.
    pub deadline_at: i64,
    /// `express`, `same_city`, `self_pickup` or `virtual`, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logistics_type: Option<String>,
    /// Packages (express).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<ShippedPackage>,
    /// The goods description sent to the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_desc: Option<String>,
    /// When shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<i64>,
    /// The admin who shipped it (`system` for virtual shipments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_by: Option<String>,
    /// The report to the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadStatus>,
    /// What happened to the buyer's shipping notice (`sent`, `no_grant`, `failed:<errcode>`,
    /// `not_configured`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// When admins were reminded that the deadline is near.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_at: Option<i64>,
    /// Admin reminders sent (subscribe messages).
    #[serde(default)]
    pub reminders_sent: u32,
    /// When the platform last pushed a shipping reminder (`trade_manage_remind_shipping`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_reminded_at: Option<i64>,
    /// When the buyer was asked to confirm receipt (`notify_confirm_receive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_reminder_at: Option<i64>,
    /// When receipt was confirmed, as the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
    /// When the platform expects to settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_settlement_at: Option<i64>,
    /// When the platform settled the funds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<i64>,
}

impl Shipping {
    /// A paid order's record before shipping.
    pub fn awaiting(deadline_at: i64) -> Self {
        Shipping {
            state: ShippingState::Awaiting,
            deadline_at,
            logistics_type: None,
            packages: Vec::new(),
            item_desc: None,
            shipped_at: None,
            shipped_by: None,
            upload: None,
            notice: None,
            reminded_at: None,
            reminders_sent: 0,
            platform_reminded_at: None,
            receipt_reminder_at: None,
            received_at: None,
            estimated_settlement_at: None,
            settled_at: None,
        }
    }

    /// Whether the deadline passed without a shipment.
    pub fn overdue(&self, now: i64) -> bool {
        self.state == ShippingState::Awaiting && self.deadline_at <= now
    }
}

/// How an admin ships: the logistics types a person picks (virtual shipments are automatic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Express, with one or more waybills.
    Express,
    /// Same-city delivery.
    SameCity,
    /// The buyer picks the goods up.
    SelfPickup,
}

impl Method {
    /// The stored name (same as the platform module's `LogisticsType::as_str`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Express => "express",
            Self::SameCity => "same_city",
            Self::SelfPickup => "self_pickup",
        }
    }
}

/// A checked shipment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shipment {
    /// How.
    pub method: Method,
    /// Packages (express: 1 to [`MAX_PACKAGES`]; otherwise none).
    pub packages: Vec<ShippedPackage>,
}

/// Most packages of one express shipment (the platform's limit).
pub const MAX_PACKAGES: usize = 15;
/// Most orders one `ship` call handles.
pub const MAX_BATCH: usize = 20;

/// Why a shipment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShipmentError {
    /// Unknown `logisticsType`.
    #[error("logisticsType must be express, same_city or self_pickup")]
    Method,
    /// Express without packages, or too many.
    #[error("express needs 1 to {MAX_PACKAGES} packages")]
    PackageCount,
    /// Packages given for a type that has none.
    #[error("only express shipments carry packages")]
    PackagesNotAllowed,
    /// A carrier code or waybill number is empty, too long or has odd characters.
    #[error(
        "package {0}: expressCompany and trackingNo must be 1 to 64 letters, digits, '-' or '_'"
    )]
    Package(usize),
}

fn code_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks what an admin entered for one order.
pub fn check_shipment(
    logistics_type: &str,
    packages: &[ShippedPackage],
) -> Result<Shipment, ShipmentError> {
    let method = match logistics_type {
        "express" => Method::Express,
        "same_city" => Method::SameCity,
        "self_pickup" => Method::SelfPickup,
        _ => return Err(ShipmentError::Method),
    };
    if method != Method::Express {
        if !packages.is_empty() {
            return Err(ShipmentError::PackagesNotAllowed);
        }
        return Ok(Shipment {
            method,
            packages: Vec::new(),
        });
    }
    if packages.is_empty() || packages.len() > MAX_PACKAGES {
        return Err(ShipmentError::PackageCount);
    }
    let mut checked = Vec::with_capacity(packages.len());
    for (i, p) in packages.iter().enumerate() {
        let company = p.express_company.as_deref().map(str::trim).unwrap_or("");
        let tracking = p.tracking_no.as_deref().map(str::trim).unwrap_or("");
        if !code_ok(company) || !code_ok(tracking) {
            return Err(ShipmentError::Package(i));
        }
        checked.push(ShippedPackage {
            express_company: Some(company.to_ascii_uppercase()),
            tracking_no: Some(tracking.to_owned()),
        });
    }
    Ok(Shipment {
        method,
        packages: checked,
    })
}

/// The goods description: `title ×quantity` per line, joined with `; `, at most 120
/// characters (the platform's limit).
pub fn item_desc(lines: &[OrderLine]) -> String {
    let text = lines
        .iter()
        .map(|l| format!("{} ×{}", l.title, l.quantity))
        .collect::<Vec<_>>()
        .join("; ");
    text.chars().take(120).collect()
}

/// A phone number masked the way the platform wants contacts (`138****6789`): the last four
/// digits clear. `None` when it has fewer than 7 characters.
pub fn mask_phone(phone: &str) -> Option<String> {
    let chars: Vec<char> = phone.trim().chars().collect();
    if chars.len() < 7 {
        return None;
    }
    let n = chars.len();
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[n - 4..].iter().collect();
    Some(format!("{head}****{tail}"))
}

/// Delay before re-sending a failed upload: 1, 2, 4 … minutes, at most an hour.
pub fn upload_backoff_secs(attempts: u32) -> i64 {
    60_i64.saturating_mul(1_i64 << attempts.min(6)).min(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::ProductKind;
    use crate::domain::money::Fen;

    fn pkg(c: &str, t: &str) -> ShippedPackage {
        ShippedPackage {
            express_company: Some(c.into()),
            tracking_no: Some(t.into()),
        }
    }

    #[test]
    fn shipments_are_checked() {
        let s = check_shipment("express", &[pkg("sf", " SF100 "), pkg("ZTO", "7")]).unwrap();
        assert_eq!(s.method, Method::Express);
        assert_eq!(s.packages[0], pkg("SF", "SF100"));
        assert_eq!(
            check_shipment("self_pickup", &[]).unwrap().method,
            Method::SelfPickup
        );
        assert_eq!(
            check_shipment("same_city", &[]).unwrap().method,
            Method::SameCity
        );
        assert_eq!(check_shipment("virtual", &[]), Err(ShipmentError::Method));
        assert_eq!(
            check_shipment("express", &[]),
            Err(ShipmentError::PackageCount)
        );
        assert_eq!(
            check_shipment("express", &vec![pkg("SF", "1"); 16]),
            Err(ShipmentError::PackageCount)
        );
        assert_eq!(
            check_shipment("self_pickup", &[pkg("SF", "1")]),
            Err(ShipmentError::PackagesNotAllowed)
        );
        assert_eq!(
            check_shipment("express", &[pkg("SF", "1"), pkg("S F", "2")]),
            Err(ShipmentError::Package(1))
        );
        assert_eq!(
            check_shipment("express", &[pkg("SF", &"9".repeat(65))]),
            Err(ShipmentError::Package(0))
        );
    }

    #[test]
    fn moves_follow_the_platform_order() {
        use ShippingState::*;
        assert!(Shipped.allowed_from().contains(&Awaiting));
        assert!(Settled.allowed_from().contains(&Received));
        assert!(!Received.allowed_from().contains(&Settled));
        assert!(!Shipped.allowed_from().contains(&Received));
    }

    #[test]
    fn description_phone_and_backoff() {
        let line = |title: &str, quantity| OrderLine {
            sku: "s".into(),
            title: title.into(),
            quantity,
            unit_price_fen: Fen::new(1).unwrap(),
            kind: ProductKind::Physical,
        };
        assert_eq!(
            item_desc(&[line("Tee", 1), line("Mug", 2)]),
            "Tee ×1; Mug ×2"
        );
        assert_eq!(
            item_desc(&[line(&"长".repeat(200), 1)]).chars().count(),
            120
        );
        assert_eq!(mask_phone("13800006789").as_deref(), Some("138****6789"));
        assert_eq!(mask_phone("12345"), None);
        assert_eq!(upload_backoff_secs(0), 60);
        assert_eq!(upload_backoff_secs(2), 240);
        assert_eq!(upload_backoff_secs(30), 3600);
        let s = Shipping::awaiting(100);
        assert!(s.overdue(100) && !s.overdue(99));
    }
}
