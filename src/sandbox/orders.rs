//! A small order API with validation, a bounded in-memory store and a status
//! that turns from "pending" to "processed" as time passes.

use super::{ApiError, AppState, lock, parse_json};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// The longest accepted `item`, in characters.
const MAX_ITEM_CHARS: usize = 200;
/// The longest accepted `customer` or `note`, in characters.
const MAX_TEXT_CHARS: usize = 1_000;
/// The largest accepted `quantity`.
const MAX_QUANTITY: u32 = 1_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/orders", get(list).post(create))
        .route("/api/orders/{id}", get(fetch).delete(remove))
}

/// The body of `POST /api/orders`, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    item: String,
    /// Signed and wide so that 0 and negative numbers reach validation and get
    /// a range message rather than a type message.
    quantity: i64,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

impl NewOrder {
    /// Checks the field values and builds the order under `id`.
    fn validate(self, id: String) -> Result<Order, ApiError> {
        if self.item.trim().is_empty() {
            return Err(ApiError::invalid("item", "must not be empty"));
        }
        check_length("item", &self.item, MAX_ITEM_CHARS)?;
        let quantity = u32::try_from(self.quantity)
            .ok()
            .filter(|quantity| (1..=MAX_QUANTITY).contains(quantity))
            .ok_or_else(|| {
                ApiError::invalid("quantity", format!("must be between 1 and {MAX_QUANTITY}"))
            })?;
        for (field, text) in [("customer", &self.customer), ("note", &self.note)] {
            if let Some(text) = text {
                check_length(field, text, MAX_TEXT_CHARS)?;
            }
        }
        Ok(Order {
            id,
            item: self.item,
            quantity,
            customer: self.customer,
            note: self.note,
            status: "pending",
            created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        })
    }
}

fn check_length(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// An order as the API shows it.
#[derive(Clone, Serialize)]
struct Order {
    id: String,
    item: String,
    quantity: u32,
    customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    status: &'static str,
    created_at: String,
}

struct Entry {
    order: Order,
    created: Instant,
    /// Insertion order, for a stable listing.
    seq: u64,
}

impl Entry {
    /// The order as of now: "processed" once `process_delay` has passed.
    fn view(&self, process_delay: Duration) -> Order {
        let mut order = self.order.clone();
        if self.created.elapsed() >= process_delay {
            order.status = "processed";
        }
        order
    }
}

/// The stored orders, bounded by `SandboxOptions::max_orders`.
#[derive(Default)]
pub(super) struct OrderStore {
    entries: HashMap<String, Entry>,
    next_seq: u64,
}

impl OrderStore {
    /// An id not in use yet.
    fn fresh_id(&self) -> String {
        let mut rng = rand::rng();
        loop {
            let id = format!("ord_{:016x}", rng.random::<u64>());
            if !self.entries.contains_key(&id) {
                return id;
            }
        }
    }
}

async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: NewOrder = parse_json(&body)?;
    let mut store = lock(&state.orders);
    let order = request.validate(store.fresh_id())?;
    if store.entries.len() >= state.opts.max_orders {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "order store is full",
        ));
    }
    let seq = store.next_seq;
    store.next_seq += 1;
    let entry = Entry {
        order: order.clone(),
        created: Instant::now(),
        seq,
    };
    store.entries.insert(order.id.clone(), entry);
    drop(store);
    let location = format!("/api/orders/{}", order.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
        .into_response())
}

async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    lock(&state.orders)
        .entries
        .get(&id)
        .map(|entry| Json(entry.view(state.opts.process_delay)))
        .ok_or_else(order_not_found)
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    lock(&state.orders)
        .entries
        .remove(&id)
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(order_not_found)
}

/// The body of `GET /api/orders`.
#[derive(Serialize)]
struct OrderList {
    count: usize,
    orders: Vec<Order>,
}

async fn list(State(state): State<AppState>) -> Json<OrderList> {
    let store = lock(&state.orders);
    let mut entries: Vec<&Entry> = store.entries.values().collect();
    entries.sort_by_key(|entry| entry.seq);
    let orders: Vec<Order> = entries
        .into_iter()
        .map(|entry| entry.view(state.opts.process_delay))
        .collect();
    Json(OrderList {
        count: orders.len(),
        orders,
    })
}

fn order_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "order not found")
}
