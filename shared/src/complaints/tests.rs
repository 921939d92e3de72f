//! The complaints service over an in-memory store and a fake complaint API.

use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::clock::FixedClock;
use crate::domain::complaint::RefundProgress;
use crate::identity::CallerSource;
use crate::pay::v3::complaints::{ComplaintOrder, NegotiationEntry};
use crate::store::collections::USERS;
use crate::store::sqlite::SqliteStore;

/// 2026-12-04T08:00:00+08:00.
const COMPLAINED_AT: i64 = 1_796_342_400;
const ID: &str = "200201820261204000000000001";

#[derive(Default)]
struct FakeApi {
    /// The platform's state of the complaint.
    state: Mutex<String>,
    responses: Mutex<Vec<String>>,
    completes: Mutex<u32>,
    progress: Mutex<Vec<RefundProgress>>,
    details: Mutex<u32>,
    fail_complete: Mutex<bool>,
}

#[async_trait]
impl ComplaintApi for FakeApi {
    fn channel(&self) -> ComplaintChannel {
        ComplaintChannel::Wxpay
    }
    async fn detail(&self, complaint_id: &str) -> Result<Complaint, ApiFailure> {
        *self.details.lock().unwrap() += 1;
        Ok(Complaint {
            complaint_id: complaint_id.into(),
            complaint_time: "2026-12-04T08:00:00+08:00".into(),
            complaint_detail: "没有收到货".into(),
            complaint_state: self.state.lock().unwrap().clone(),
            payer_openid: Some("buyer".into()),
            complaint_order_info: vec![ComplaintOrder {
                transaction_id: "4200000001".into(),
                out_trade_no: "WM1".into(),
                amount: 2500,
                wxa_out_trade_no: None,
            }],
            problem_type: Some("REFUND".into()),
            apply_refund_amount: Some(2500),
            ..Complaint::default()
        })
    }
    async fn history(&self, _: &str) -> Result<Vec<NegotiationEntry>, ApiFailure> {
        Ok(self
            .responses
            .lock()
            .unwrap()
            .iter()
            .map(|r| NegotiationEntry {
                operate_type: "MERCHANT_RESPONSE".into(),
                operate_details: r.clone(),
                ..NegotiationEntry::default()
            })
            .collect())
    }
    async fn respond(&self, _: &str, content: &str) -> Result<(), ApiFailure> {
        self.responses.lock().unwrap().push(content.into());
        let mut state = self.state.lock().unwrap();
        if *state == "PENDING" {
            *state = "PROCESSING".into();
        }
        Ok(())
    }
    async fn complete(&self, _: &str) -> Result<(), ApiFailure> {
        if *self.fail_complete.lock().unwrap() {
            return Err(ApiFailure {
                message: "INVALID_REQUEST".into(),
                retryable: false,
            });
        }
        *self.completes.lock().unwrap() += 1;
        *self.state.lock().unwrap() = "PROCESSED".into();
        Ok(())
    }
    async fn refund_progress(&self, _: &str, p: &RefundProgress) -> Result<(), ApiFailure> {
        self.progress.lock().unwrap().push(p.clone());
        Ok(())
    }
    async fn between(&self, _: &str, _: &str) -> Result<Vec<Complaint>, ApiFailure> {
        Ok(Vec::new())
    }
}

struct World {
    complaints: Complaints,
    api: Arc<FakeApi>,
    clock: Arc<FixedClock>,
    store: Arc<dyn Store>,
}

async fn world() -> World {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    crate::store::bootstrap(store.as_ref()).await.unwrap();
    for (id, role) in [("admin", "admin"), ("buyer", "user")] {
        store
            .insert(USERS, json!({"_id": id, "openid": id, "role": role}))
            .await
            .unwrap();
    }
    let api = Arc::new(FakeApi::default());
    *api.state.lock().unwrap() = "PENDING".into();
    let clock = Arc::new(FixedClock::new(COMPLAINED_AT + 60));
    let complaints = Complaints::new(store.clone(), clock.clone()).with_api(api.clone());
    World {
        complaints,
        api,
        clock,
        store,
    }
}

fn caller(openid: &str) -> Caller {
    Caller {
        openid: openid.into(),
        appid: "wxapp".into(),
        unionid: None,
        tenant: None,
        plan: None,
        admin: true,
        source: CallerSource::Session,
    }
}

fn notice(id: &str) -> ComplaintNotice {
    ComplaintNotice {
        id: id.into(),
        event_type: "COMPLAINT.CREATE".into(),
        complaint_id: ID.into(),
        action_type: "CREATE_COMPLAINT".into(),
    }
}

#[tokio::test]
async fn a_notification_stores_the_complaint_read_back_with_its_deadline_once() {
    let w = world().await;
    let outcome = w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap();
    assert_eq!(
        outcome,
        NoticeOutcome::Applied {
            state: "PENDING".into(),
            new: true
        }
    );
    let doc = w.complaints.get(ID).await.unwrap().unwrap();
    assert_eq!(doc.complaint_time, COMPLAINED_AT);
    assert_eq!(doc.respond_by, COMPLAINED_AT + 24 * 3600);
    assert_eq!(
        doc.detail, "没有收到货",
        "content comes from the detail API"
    );
    assert_eq!(doc.order_refs[0].out_trade_no, "WM1");
    assert_eq!(doc.last_action.as_deref(), Some("CREATE_COMPLAINT"));
    // Redelivered: recognised, nothing read or written again.
    assert_eq!(
        w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap(),
        NoticeOutcome::Duplicate
    );
    assert_eq!(*w.api.details.lock().unwrap(), 1);
    // A later notification of the same complaint is applied (it is a new id).
    assert!(matches!(
        w.complaints.on_wxpay_notice(&notice("EV-2")).await.unwrap(),
        NoticeOutcome::Applied { new: false, .. }
    ));
}

#[tokio::test]
async fn admins_respond_then_complete_and_others_are_refused() {
    let w = world().await;
    w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap();
    let refused = w
        .complaints
        .respond(
            &caller("buyer"),
            RespondInput {
                complaint_id: ID.into(),
                content: "hi".into(),
            },
        )
        .await;
    assert!(matches!(refused, Err(ComplaintsError::Forbidden)));
    assert!(matches!(
        w.complaints
            .list(&caller("buyer"), ListInput::default())
            .await,
        Err(ComplaintsError::Forbidden)
    ));

    let answered = w
        .complaints
        .respond(
            &caller("admin"),
            RespondInput {
                complaint_id: ID.into(),
                content: "您好，已为您安排退款".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(answered["complaint"]["state"], "PROCESSING");
    assert_eq!(answered["complaint"]["awaitingReply"], false);
    let detail = w.complaints.detail(&caller("admin"), ID).await.unwrap();
    assert_eq!(
        detail["history"][0]["operate_details"],
        "您好，已为您安排退款"
    );

    let done = w.complaints.complete(&caller("admin"), ID).await.unwrap();
    assert_eq!(done["complaint"]["state"], "PROCESSED");
    assert_eq!(done["complaint"]["completedBy"], "admin");
    // Processed: nothing more can be sent, and nothing is.
    assert!(matches!(
        w.complaints.complete(&caller("admin"), ID).await,
        Err(ComplaintsError::Rule(ComplaintRuleError::Closed))
    ));
    assert!(matches!(
        w.complaints
            .respond(
                &caller("admin"),
                RespondInput {
                    complaint_id: ID.into(),
                    content: "again".into()
                }
            )
            .await,
        Err(ComplaintsError::Rule(ComplaintRuleError::Closed))
    ));
    assert_eq!(*w.api.completes.lock().unwrap(), 1);
    assert_eq!(w.api.responses.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_complete_of_a_complaint_the_platform_shows_processed_counts_as_done() {
    let w = world().await;
    w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap();
    *w.api.fail_complete.lock().unwrap() = true;
    assert!(matches!(
        w.complaints.complete(&caller("admin"), ID).await,
        Err(ComplaintsError::Provider(_))
    ));
    // Completed in the merchant console meanwhile: the repeat is refused, the state says done.
    *w.api.state.lock().unwrap() = "PROCESSED".into();
    let done = w.complaints.complete(&caller("admin"), ID).await;
    // The stored copy was PENDING, so the rule let it through; the platform decides.
    assert_eq!(done.unwrap()["complaint"]["state"], "PROCESSED");
}

#[tokio::test]
async fn refund_progress_is_checked_then_sent() {
    let w = world().await;
    w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap();
    let input = |decision: &str| RefundProgressInput {
        complaint_id: ID.into(),
        decision: decision.into(),
        launch_refund_day: None,
        reject_reason: None,
        remark: None,
    };
    assert!(matches!(
        w.complaints
            .refund_progress(&caller("admin"), input("REJECT"))
            .await,
        Err(ComplaintsError::Rule(ComplaintRuleError::Invalid(_)))
    ));
    let approved = w
        .complaints
        .refund_progress(&caller("admin"), input("APPROVE"))
        .await
        .unwrap();
    assert_eq!(approved["complaint"]["refundProgress"], "APPROVE");
    assert_eq!(w.api.progress.lock().unwrap().len(), 1);
    assert!(matches!(
        w.complaints
            .respond(
                &caller("admin"),
                RespondInput {
                    complaint_id: "../x".into(),
                    content: "x".into()
                }
            )
            .await,
        Err(ComplaintsError::BadRequest(_))
    ));
    assert!(matches!(
        w.complaints.complete(&caller("admin"), "2002000").await,
        Err(ComplaintsError::NotFound)
    ));
}

#[tokio::test]
async fn admins_are_reminded_once_within_four_hours_of_the_deadline_within_the_budget() {
    let w = world().await;
    w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap();
    // 19 hours in: not yet.
    w.clock.set(COMPLAINED_AT + 19 * 3600);
    let report = w.complaints.remind_due(10).await.unwrap();
    assert_eq!((report.due, report.reminded), (0, 0));
    // 21 hours in: reminded, after reading the complaint again.
    w.clock.set(COMPLAINED_AT + 21 * 3600);
    let details = *w.api.details.lock().unwrap();
    let report = w.complaints.remind_due(0).await.unwrap();
    assert_eq!(
        (report.due, report.deferred, report.reminded),
        (1, 1, 0),
        "no budget"
    );
    let report = w.complaints.remind_due(10).await.unwrap();
    assert_eq!((report.reminded, report.provider_calls), (1, 1));
    assert_eq!(*w.api.details.lock().unwrap(), details + 1);
    let doc = w.complaints.get(ID).await.unwrap().unwrap();
    assert_eq!(doc.reminded_at, Some(COMPLAINED_AT + 21 * 3600));
    let listed = w
        .complaints
        .list(&caller("admin"), ListInput::default())
        .await
        .unwrap();
    assert_eq!(listed["complaints"][0]["dueInSecs"], 3 * 3600);
    // Once.
    let report = w.complaints.remind_due(10).await.unwrap();
    assert_eq!((report.due, report.reminded), (0, 0));
}

#[tokio::test]
async fn a_complaint_answered_elsewhere_is_not_reminded() {
    let w = world().await;
    w.complaints.on_wxpay_notice(&notice("EV-1")).await.unwrap();
    // Answered in the merchant console: only the platform knows.
    *w.api.state.lock().unwrap() = "PROCESSING".into();
    w.clock.set(COMPLAINED_AT + 23 * 3600);
    let report = w.complaints.remind_due(10).await.unwrap();
    assert_eq!((report.due, report.answered, report.reminded), (1, 1, 0));
    assert!(
        w.store
            .get(COMPLAINTS, ID)
            .await
            .unwrap()
            .unwrap()
            .get("remindedAt")
            .is_none()
    );
}

#[test]
fn china_dates() {
    assert_eq!(china_date(COMPLAINED_AT), "2026-12-04");
    assert_eq!(china_date(COMPLAINED_AT - 8 * 3600 - 1), "2026-12-03");
}
