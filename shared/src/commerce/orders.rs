//! Creating, reading and canceling orders; the catalog.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};

use super::Commerce;
use super::channel::Payer;
use super::error::CommerceError;
use super::model::{OrderDoc, Reservation, UpgradeTerms, collections as c, product_view};
use super::upgrade::UpgradeRequest;
use crate::domain::catalog::{Channel, Product, ProductKind};
use crate::domain::ids::OutTradeNo;
use crate::domain::money::Fen;
use crate::domain::order::{CartLine, MAX_LINES, OrderLine, OrderStatus, PricingError, price_cart};
use crate::domain::subscription::Plan;
use crate::identity::Caller;
use crate::store::{Filter, FindOptions, StoreError, Update, UpdateOptions};

/// Largest page of `list` / `search`.
const MAX_PAGE: u64 = 50;
/// Largest `clientRequestId`.
const MAX_REQUEST_ID: usize = 64;
/// Unpaid, unexpired orders one buyer may hold at once: enough for real checkouts on a few
/// devices, too few to hoard stock (every open order keeps its items reserved).
pub const MAX_OPEN_ORDERS: u64 = 10;

/// `create` data.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInput {
    /// Client-generated, unique per checkout.
    pub client_request_id: String,
    /// What and how many (any price the client adds is ignored).
    #[serde(default)]
    pub items: Vec<CartLine>,
    /// Instead of `items`: buy an upgrade of a running subscription to a higher plan, priced
    /// by proration on the server.
    #[serde(default)]
    pub upgrade: Option<UpgradeRequest>,
    /// Shipping address for physical goods.
    #[serde(default)]
    pub address: Option<Value>,
}

/// `list` data.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListInput {
    /// Only orders in this state.
    #[serde(default)]
    pub status: Option<OrderStatus>,
    /// Page size (≤ 50, default 20).
    #[serde(default)]
    pub limit: Option<u64>,
    /// Orders created strictly before this time.
    #[serde(default)]
    pub before: Option<i64>,
}

/// `search` data (admin).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchInput {
    /// Only orders in this state.
    #[serde(default)]
    pub status: Option<OrderStatus>,
    /// Only this buyer's orders.
    #[serde(default)]
    pub openid: Option<String>,
    /// Only this merchant order number.
    #[serde(default)]
    pub out_trade_no: Option<String>,
    /// Page size (≤ 50, default 20).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// An order priced and checked, before stock is taken and it is stored.
pub(super) struct Draft {
    pub(super) channel: Channel,
    pub(super) lines: Vec<OrderLine>,
    pub(super) total: Fen,
    pub(super) reservations: Vec<Reservation>,
    /// The tenant the order is for (tenant plans).
    pub(super) tenant: Option<String>,
    pub(super) upgrade: Option<UpgradeTerms>,
}

/// What `create` returns: the order and the payment parameters (none once it is not payable).
#[derive(Debug, Clone)]
pub struct Created {
    /// The order.
    pub order: OrderDoc,
    /// `{channel, params}` for `wx.requestPayment` / `wx.requestVirtualPayment`.
    pub payment: Option<Value>,
}

impl Created {
    /// The reply `data`.
    pub fn view(&self) -> Value {
        json!({ "order": self.order.view(), "payment": self.payment })
    }
}

/// Whether two carts ask for the same thing (order and split lines do not matter).
fn same_cart(items: &[CartLine], order: &OrderDoc) -> bool {
    let mut asked: HashMap<&str, u32> = HashMap::new();
    for line in items {
        *asked.entry(line.sku.as_str()).or_default() += line.quantity;
    }
    asked.len() == order.items.len()
        && order
            .items
            .iter()
            .all(|l| asked.get(l.sku.as_str()) == Some(&l.quantity))
}

impl Commerce {
    /// `create`: prices, reserves, stores and returns the payment parameters. The same
    /// `clientRequestId` returns the same order (no second prepay while the first is valid).
    pub async fn create_order(
        &self,
        caller: &Caller,
        input: CreateInput,
    ) -> Result<Created, CommerceError> {
        let request_id = input.client_request_id.trim();
        if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID {
            return Err(CommerceError::BadRequest(format!(
                "clientRequestId must be 1-{MAX_REQUEST_ID} characters"
            )));
        }
        if let Some(address) = &input.address
            && !address.is_object()
        {
            return Err(CommerceError::BadRequest(
                "address must be an object".into(),
            ));
        }
        if self.appid.is_empty() {
            return Err(CommerceError::ChannelUnavailable(
                "any (WECHAT_APPID is not set)",
            ));
        }
        if let Some(existing) = self.find_by_request(&caller.openid, request_id).await? {
            return self.replay(caller, existing, &input).await;
        }
        let open = self
            .store
            .count(
                c::ORDERS,
                &Filter::eq("openid", caller.openid.as_str())
                    .and(Filter::eq("status", OrderStatus::Created.as_str()))
                    .and(Filter::gt("expiresAt", self.now())),
            )
            .await?;
        if open >= MAX_OPEN_ORDERS {
            return Err(CommerceError::TooManyOpenOrders(open));
        }

        let draft = match &input.upgrade {
            Some(request) if input.items.is_empty() => self.price_upgrade(caller, request).await?,
            Some(_) => {
                return Err(CommerceError::BadRequest(
                    "send either items or upgrade, not both".into(),
                ));
            }
            None => self.price_items(caller, &input.items).await?,
        };

        // Everything that can refuse the order is checked before stock is taken.
        let channel = self.require_channel(draft.channel)?;
        channel.check_lines(&draft.lines)?;
        let session_key = if channel.needs_session_key() {
            Some(self.session_key(&caller.openid).await?)
        } else {
            None
        };
        let counted = draft.reservations;
        // Stock is taken under a hold named after the order before the order is stored, so
        // a stop in between leaves holds reconciliation can give back (`release_orphan_holds`).
        let order_id = crate::store::new_id();
        self.reserve(&counted, Some(&order_id)).await?;

        let now = self.now();
        let order = OrderDoc {
            id: order_id,
            out_trade_no: OutTradeNo::generate(now, (self.random)()).to_string(),
            owner: caller.openid.clone(),
            appid: self.appid.clone(),
            tenant: draft.tenant,
            client_request_id: request_id.to_owned(),
            status: OrderStatus::Created,
            channel: draft.channel,
            items: draft.lines,
            total_fen: draft.total,
            created_at: now,
            expires_at: now + self.order_ttl_secs,
            paid_at: None,
            fulfilled_at: None,
            closed_at: None,
            refunded_fen: Fen::ZERO,
            refunding_fen: Fen::ZERO,
            address: input.address.clone(),
            reservations: counted.clone(),
            stock_released: false,
            prepay: None,
            sign_data: None,
            transaction_id: None,
            review_reason: None,
            grants_revoked: false,
            shipping: None,
            upgrade: draft.upgrade,
        };
        match self.store.insert_as(c::ORDERS, &order).await {
            Ok(_) => {}
            Err(StoreError::DuplicateKey { .. }) => {
                // The same request raced us: give the stock back and answer with its order.
                self.release_holds(&order.id, &counted).await;
                let existing = self
                    .find_by_request(&caller.openid, request_id)
                    .await?
                    .ok_or_else(|| CommerceError::Conflict("order number collision".into()))?;
                return self.replay(caller, existing, &input).await;
            }
            Err(e) => {
                self.release_holds(&order.id, &counted).await;
                return Err(e.into());
            }
        }
        // The stored order owns the stock now (`reservations`); the holds are only a trace.
        self.drop_holds(&order.id, &counted).await;
        tracing::info!(order = %order.id, out_trade_no = %order.out_trade_no,
            total = order.total_fen.get(), channel = order.channel.as_str(), "order created");
        self.payment_for(order, session_key).await
    }

    /// Prices a cart from the catalog; the client's prices never reach this point.
    async fn price_items(
        &self,
        caller: &Caller,
        items: &[CartLine],
    ) -> Result<Draft, CommerceError> {
        // The size is checked before any read, so a huge cart costs one comparison; the
        // distinct skus are then read in one query.
        if items.is_empty() || items.len() > MAX_LINES {
            return Err(PricingError::BadCartSize.into());
        }
        let skus: BTreeSet<&str> = items
            .iter()
            .map(|l| l.sku.as_str())
            .filter(|sku| !sku.is_empty() && sku.len() <= 64)
            .collect();
        let mut products: HashMap<String, Product> = HashMap::new();
        if !skus.is_empty() {
            let found = self
                .store
                .find(
                    c::PRODUCTS,
                    &Filter::is_in("_id", skus.iter().copied()),
                    &FindOptions::new().limit(MAX_LINES as u64),
                )
                .await?;
            for doc in found {
                let id = doc["_id"].as_str().unwrap_or_default().to_owned();
                let product: Product = serde_json::from_value(doc)
                    .map_err(|e| StoreError::InvalidDocument(e.to_string()))?;
                products.insert(id, product);
            }
        }
        let priced = price_cart(items, |sku| products.get(sku))?;
        let tenant = caller.tenant.as_ref().map(|t| t.id.clone());
        if priced
            .lines
            .iter()
            .any(|l| matches!(l.kind, ProductKind::TenantPlan { .. }))
            && tenant.is_none()
        {
            return Err(CommerceError::TenantRequired);
        }
        let reservations = priced
            .lines
            .iter()
            .filter(|l| products.get(&l.sku).is_some_and(|p| p.stock.is_some()))
            .map(|l| Reservation {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect();
        Ok(Draft {
            channel: priced.channel,
            lines: priced.lines,
            total: priced.total,
            reservations,
            tenant,
            upgrade: None,
        })
    }

    /// The answer to a repeated `create`: same order, and its payment parameters while payable.
    async fn replay(
        &self,
        caller: &Caller,
        order: OrderDoc,
        input: &CreateInput,
    ) -> Result<Created, CommerceError> {
        let same = match (&order.upgrade, &input.upgrade) {
            (Some(terms), Some(asked)) => terms.plan == asked.plan && terms.scope == asked.scope,
            (None, None) => same_cart(&input.items, &order),
            _ => false,
        };
        if !same {
            return Err(CommerceError::Conflict(
                "clientRequestId was already used for a different cart".into(),
            ));
        }
        if order.status != OrderStatus::Created || order.expires_at <= self.now() {
            return Ok(Created {
                order,
                payment: None,
            });
        }
        let session_key = if self.require_channel(order.channel)?.needs_session_key() {
            Some(self.session_key(&caller.openid).await?)
        } else {
            None
        };
        self.payment_for(order, session_key).await
    }

    /// Payment parameters for a payable order: the channel reuses what the order remembers
    /// (a valid prepay, the stored signData).
    async fn payment_for(
        &self,
        mut order: OrderDoc,
        session_key: Option<String>,
    ) -> Result<Created, CommerceError> {
        let payer = Payer {
            session_key: session_key.as_deref(),
            now: self.now(),
        };
        let started = self
            .require_channel(order.channel)?
            .start(&mut order, payer)
            .await?;
        if let Some(remember) = started.remember {
            self.store
                .update_one(
                    c::ORDERS,
                    &Filter::id(order.id.as_str()),
                    &remember,
                    UpdateOptions::default(),
                )
                .await?;
        }
        let params = started.params?;
        let payment = json!({ "channel": order.channel.as_str(), "params": params });
        Ok(Created {
            order,
            payment: Some(payment),
        })
    }

    /// The caller's session_key, opened from `users.sessionKey`.
    async fn session_key(&self, openid: &str) -> Result<String, CommerceError> {
        let key = self
            .data_key
            .as_ref()
            .ok_or(CommerceError::ChannelUnavailable(
                "xpay (no WEMINT_DATA_KEY)",
            ))?;
        match crate::identity::session_key(self.store.as_ref(), key, openid).await {
            Ok(Some(stored)) if !stored.key.expose().is_empty() => Ok(stored.key.expose().clone()),
            Ok(_) => Err(CommerceError::SessionKeyMissing),
            // Sealed under another key or for another user: only a fresh login fixes it.
            Err(crate::identity::SessionKeyError::Sealed(_)) => {
                Err(CommerceError::SessionKeyMissing)
            }
            Err(crate::identity::SessionKeyError::Store(e)) => Err(e.into()),
        }
    }

    async fn find_by_request(
        &self,
        owner: &str,
        request_id: &str,
    ) -> Result<Option<OrderDoc>, CommerceError> {
        let filter = Filter::eq("openid", owner).and(Filter::eq("clientRequestId", request_id));
        Ok(self.store.find_one_as(c::ORDERS, &filter).await?)
    }

    /// Takes stock for every counted line with a conditional `$inc` (`stock ≥ quantity`), so
    /// stock never goes negative; on a shortfall what was taken is given back. With `hold`
    /// (an order not stored yet), each product records `holds.o_<order>` in the same write,
    /// so exactly what was taken can be given back whatever step a crash stops at.
    async fn reserve(
        &self,
        lines: &[Reservation],
        hold: Option<&str>,
    ) -> Result<(), CommerceError> {
        for (i, line) in lines.iter().enumerate() {
            let qty = i64::from(line.quantity);
            let mut filter = Filter::id(line.sku.as_str()).and(Filter::gte("stock", qty));
            let mut update = Update::new().inc("stock", -qty);
            if let Some(order_id) = hold {
                filter = filter.and(Filter::exists(hold_path(order_id), false));
                update = update.set(hold_path(order_id), json!({"qty": qty, "at": self.now()}));
            }
            let taken = self
                .store
                .update_one(c::PRODUCTS, &filter, &update, UpdateOptions::default())
                .await;
            let failed = match taken {
                Ok(Some(_)) => continue,
                Ok(None) => CommerceError::OutOfStock(line.sku.clone()),
                Err(e) => e.into(),
            };
            match hold {
                Some(order_id) => self.release_holds(order_id, &lines[..i]).await,
                None => self.unreserve(&lines[..i]).await,
            }
            return Err(failed);
        }
        Ok(())
    }

    /// Gives back the stock an order that was never stored held, once per product (the hold
    /// is removed in the same write). Best effort: reconciliation retries what fails.
    async fn release_holds(&self, order_id: &str, lines: &[Reservation]) {
        for line in lines {
            let result = self
                .store
                .update_one(
                    c::PRODUCTS,
                    &Filter::id(line.sku.as_str()).and(Filter::exists(hold_path(order_id), true)),
                    &Update::new()
                        .inc("stock", i64::from(line.quantity))
                        .unset(hold_path(order_id)),
                    UpdateOptions::default(),
                )
                .await;
            if let Err(e) = result {
                tracing::error!(sku = %line.sku, order = order_id, error = %e, "stock hold release failed");
            }
        }
    }

    /// Removes the holds of a stored order (its stock stays taken). Best effort:
    /// reconciliation removes what is left.
    async fn drop_holds(&self, order_id: &str, lines: &[Reservation]) {
        for line in lines {
            let result = self
                .store
                .update_one(
                    c::PRODUCTS,
                    &Filter::id(line.sku.as_str()).and(Filter::exists(hold_path(order_id), true)),
                    &Update::new().unset(hold_path(order_id)),
                    UpdateOptions::default(),
                )
                .await;
            if let Err(e) = result {
                tracing::warn!(sku = %line.sku, order = order_id, error = %e, "dropping a stock hold failed");
            }
        }
    }

    /// Reconciliation: holds taken before `before` whose order was never stored are given
    /// back; holds of stored orders are dropped. `before` must be older than the longest a
    /// function can run, so the order of a hold that old is stored by now or never will be.
    /// Returns how many holds were given back.
    pub(crate) async fn release_orphan_holds(
        &self,
        before: i64,
        limit: u64,
    ) -> Result<u32, CommerceError> {
        let products = self
            .store
            .find(
                c::PRODUCTS,
                &Filter::exists("holds", true),
                &FindOptions::new().limit(limit),
            )
            .await?;
        let mut released = 0;
        for product in products {
            let Some(sku) = product.get("_id").and_then(Value::as_str) else {
                continue;
            };
            let Some(holds) = product.get("holds").and_then(Value::as_object) else {
                continue;
            };
            for (key, hold) in holds {
                let Some(order_id) = key.strip_prefix("o_") else {
                    continue;
                };
                let at = hold.get("at").and_then(Value::as_i64).unwrap_or(0);
                let qty = hold.get("qty").and_then(Value::as_i64).unwrap_or(0);
                if at >= before {
                    continue;
                }
                let filter = Filter::id(sku).and(Filter::exists(hold_path(order_id), true));
                let stored = self.store.get(c::ORDERS, order_id).await?.is_some();
                let update = if stored {
                    Update::new().unset(hold_path(order_id))
                } else {
                    Update::new().inc("stock", qty).unset(hold_path(order_id))
                };
                let won = self
                    .store
                    .update_one(c::PRODUCTS, &filter, &update, UpdateOptions::default())
                    .await?;
                if won.is_some() && !stored {
                    tracing::warn!(
                        sku,
                        order = order_id,
                        qty,
                        "stock of an order never stored given back"
                    );
                    released += 1;
                }
            }
        }
        Ok(released)
    }

    /// Gives stock back (best effort: a failure leaves stock understated, never negative).
    async fn unreserve(&self, lines: &[Reservation]) {
        for line in lines {
            let result = self
                .store
                .update_one(
                    c::PRODUCTS,
                    &Filter::id(line.sku.as_str()),
                    &Update::new().inc("stock", i64::from(line.quantity)),
                    UpdateOptions::default(),
                )
                .await;
            if let Err(e) = result {
                tracing::error!(sku = %line.sku, error = %e, "stock release failed");
            }
        }
    }

    /// Releases an order's reservations exactly once (the `stockReleased` flag is the lock).
    pub(crate) async fn release_stock(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        if order.reservations.is_empty() {
            return Ok(());
        }
        let won = self
            .store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(Filter::ne("stockReleased", true)),
                &Update::new().set("stockReleased", true),
                UpdateOptions::default(),
            )
            .await?;
        if won.is_some() {
            self.unreserve(&order.reservations).await;
        }
        Ok(())
    }

    /// Takes the stock of an order paid after it was closed (its reservation was released).
    /// Returns false when the stock is gone: the order is paid but cannot ship everything.
    pub(crate) async fn retake_stock(&self, order: &OrderDoc) -> Result<bool, CommerceError> {
        let won = self
            .store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(Filter::eq("stockReleased", true)),
                &Update::new().set("stockReleased", false),
                UpdateOptions::default(),
            )
            .await?;
        if won.is_none() {
            return Ok(true);
        }
        match self.reserve(&order.reservations, None).await {
            Ok(()) => Ok(true),
            Err(CommerceError::OutOfStock(sku)) => {
                tracing::error!(order = %order.id, sku = %sku,
                    "order paid after closing but the stock is gone");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// `get`: one of the caller's orders.
    pub async fn get_order(
        &self,
        caller: &Caller,
        order_id: &str,
    ) -> Result<OrderDoc, CommerceError> {
        match self.store.get_as::<OrderDoc>(c::ORDERS, order_id).await? {
            Some(order) if order.owner == caller.openid => Ok(order),
            _ => Err(CommerceError::OrderNotFound),
        }
    }

    /// `list`: the caller's orders, newest first.
    pub async fn list_orders(
        &self,
        caller: &Caller,
        input: ListInput,
    ) -> Result<Value, CommerceError> {
        let limit = input.limit.unwrap_or(20).clamp(1, MAX_PAGE);
        let mut filter = Filter::eq("openid", caller.openid.as_str());
        if let Some(status) = input.status {
            filter = filter.and(Filter::eq("status", status.as_str()));
        }
        if let Some(before) = input.before {
            filter = filter.and(Filter::lt("createdAt", before));
        }
        let orders: Vec<OrderDoc> = self
            .store
            .find_as(
                c::ORDERS,
                &filter,
                &FindOptions::new().sort_desc("createdAt").limit(limit),
            )
            .await?;
        let next = (orders.len() as u64 == limit)
            .then(|| orders.last().map(|o| o.created_at))
            .flatten();
        Ok(json!({
            "orders": orders.iter().map(OrderDoc::view).collect::<Vec<_>>(),
            "next": next,
        }))
    }

    /// `search` (admin): orders by state, buyer or merchant number.
    pub async fn search_orders(
        &self,
        caller: &Caller,
        input: SearchInput,
    ) -> Result<Value, CommerceError> {
        self.require_admin(caller).await?;
        let limit = input.limit.unwrap_or(20).clamp(1, MAX_PAGE);
        let mut filters = Vec::new();
        if let Some(status) = input.status {
            filters.push(Filter::eq("status", status.as_str()));
        }
        if let Some(openid) = input.openid {
            filters.push(Filter::eq("openid", openid));
        }
        if let Some(no) = input.out_trade_no {
            filters.push(Filter::eq("outTradeNo", no));
        }
        let orders: Vec<OrderDoc> = self
            .store
            .find_as(
                c::ORDERS,
                &Filter::all_of(filters),
                &FindOptions::new().sort_desc("createdAt").limit(limit),
            )
            .await?;
        Ok(json!({ "orders": orders.iter().map(OrderDoc::admin_view).collect::<Vec<_>>() }))
    }

    /// `cancel`: closes an unpaid order of the caller (at WeChat Pay too) and releases stock.
    pub async fn cancel_order(
        &self,
        caller: &Caller,
        order_id: &str,
    ) -> Result<OrderDoc, CommerceError> {
        let order = self.get_order(caller, order_id).await?;
        if order.status != OrderStatus::Created {
            return Err(CommerceError::NotCancelable(order.status.as_str()));
        }
        self.close_order(&order).await?;
        match self.store.get_as::<OrderDoc>(c::ORDERS, order_id).await? {
            Some(o) if o.status == OrderStatus::Closed => Ok(o),
            Some(o) => Err(CommerceError::NotCancelable(o.status.as_str())),
            None => Err(CommerceError::OrderNotFound),
        }
    }

    /// Closes a `created` order at the provider and here, then releases its stock. Returns
    /// whether this call closed it.
    pub(crate) async fn close_order(&self, order: &OrderDoc) -> Result<bool, CommerceError> {
        if let Some(channel) = self.channel(order.channel) {
            channel.close(order).await?;
        }
        let now = self.now();
        let closed = self
            .store
            .update_one(
                c::ORDERS,
                &Filter::id(order.id.as_str()).and(status_in(OrderStatus::Closed)),
                &Update::new()
                    .set("status", OrderStatus::Closed.as_str())
                    .set("closedAt", now),
                UpdateOptions::default(),
            )
            .await?;
        if closed.is_some() {
            self.release_stock(order).await?;
            tracing::info!(order = %order.id, "order closed");
        }
        Ok(closed.is_some())
    }

    /// `catalog`: active products, optionally of one kind, with plan details.
    pub async fn catalog(&self, kind: Option<&str>) -> Result<Value, CommerceError> {
        let mut filter = Filter::eq("active", true);
        if let Some(kind) = kind {
            filter = filter.and(Filter::eq("kind.type", kind));
        }
        let products: Vec<Product> = self
            .store
            .find_as(c::PRODUCTS, &filter, &FindOptions::new().sort_asc("sku"))
            .await?;
        let mut out = Vec::with_capacity(products.len());
        for product in &products {
            let plan = match &product.kind {
                ProductKind::Membership { plan } | ProductKind::TenantPlan { plan } => {
                    self.plan(plan).await?
                }
                _ => None,
            };
            out.push(product_view(product, plan.as_ref()));
        }
        Ok(json!({ "products": out }))
    }

    /// A plan from `plans`.
    pub(crate) async fn plan(&self, id: &str) -> Result<Option<Plan>, CommerceError> {
        Ok(self.store.get_as::<Plan>(c::PLANS, id).await?)
    }
}

/// `status ∈ allowed_from(to)`: the condition of every transition to `to`.
/// Where a product records the stock an order not stored yet took.
fn hold_path(order_id: &str) -> String {
    format!("holds.o_{order_id}")
}

pub(crate) fn status_in(to: OrderStatus) -> Filter {
    Filter::is_in(
        "status",
        to.allowed_from().iter().map(|s| Value::from(s.as_str())),
    )
}
