//! A small order API with validation, a bounded in-memory store and a status
//! that turns from "pending" to "processed" as time passes; and `POST /echo`,
//! which answers a request's body back byte for byte.
//!
//! Validation is strict enough that every anomaly a workload injects (see
//! `crate::probe::mutate`) is rejected with a 400 whose `field` names the
//! mutated field: types are checked by serde, every string has a size cap,
//! `priority` and `currency` are enums and `email` must look like an
//! address. The fields added after the first version are optional so older
//! clients keep working; `?strict=true` makes them required, for workloads
//! whose `missing_field` anomalies must be rejected whichever field they
//! drop.
//!
//! Synthetic orders can be found and purged by their marker (an id prefix
//! such as `synth-` at the start of `item`, `customer`, `email` or `note`):
//! `GET /api/orders?marker=P`, `GET /api/orders/count?marker=P` and
//! `DELETE /api/orders?marker=P`, so a test can check that a flow left
//! nothing behind.

use super::{ApiError, AppState, QueryParams, lock, parse_json};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// The longest accepted `item`, in characters.
const MAX_ITEM_CHARS: usize = 200;
/// The longest accepted `note`, in characters.
const MAX_NOTE_CHARS: usize = 1_000;
/// The longest accepted `customer` or `email`, in bytes.
const MAX_CONTACT_BYTES: usize = 256;
/// The largest accepted `quantity`.
const MAX_QUANTITY: u32 = 1_000;
/// The accepted values of `priority`; the first is the default.
const PRIORITIES: &[&str] = &["standard", "express"];
/// The accepted values of `currency` (ISO 4217 codes).
const CURRENCIES: &[&str] = &["EUR", "GBP", "USD"];
/// The longest error message or field name an answer repeats, in bytes: a
/// rejected oversize value is not sent back whole.
const MAX_ERROR_BYTES: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/orders", get(list).post(create).delete(purge))
        .route("/api/orders/count", get(count))
        .route("/api/orders/{id}", get(fetch).delete(remove))
        .route("/echo", post(echo))
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
    email: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    currency: Option<String>,
}

impl NewOrder {
    /// Checks the field values and builds the order under `id`. `strict`
    /// requires the optional fields (all but `note`).
    fn validate(self, id: String, strict: bool) -> Result<Order, ApiError> {
        if self.item.trim().is_empty() {
            return Err(ApiError::invalid("item", "must not be empty"));
        }
        check_chars("item", &self.item, MAX_ITEM_CHARS)?;
        let quantity = u32::try_from(self.quantity)
            .ok()
            .filter(|quantity| (1..=MAX_QUANTITY).contains(quantity))
            .ok_or_else(|| {
                ApiError::invalid("quantity", format!("must be between 1 and {MAX_QUANTITY}"))
            })?;
        if let Some(customer) = &self.customer {
            check_bytes("customer", customer, MAX_CONTACT_BYTES)?;
        }
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        if let Some(note) = &self.note {
            check_chars("note", note, MAX_NOTE_CHARS)?;
        }
        let priority = self
            .priority
            .as_deref()
            .map(|value| one_of("priority", value, PRIORITIES))
            .transpose()?;
        let currency = self
            .currency
            .as_deref()
            .map(|value| one_of("currency", value, CURRENCIES))
            .transpose()?;
        if strict {
            for (field, present) in [
                ("customer", self.customer.is_some()),
                ("email", self.email.is_some()),
                ("priority", priority.is_some()),
                ("currency", currency.is_some()),
            ] {
                if !present {
                    return Err(ApiError::invalid(field, "is required"));
                }
            }
        }
        Ok(Order {
            id,
            item: self.item,
            quantity,
            customer: self.customer,
            email: self.email,
            note: self.note,
            priority: priority.unwrap_or(PRIORITIES[0]),
            currency,
            status: "pending",
            created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        })
    }
}

fn check_chars(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

fn check_bytes(field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.len() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    Ok(())
}

/// A plausible address: one `@` between a non-empty local part and a dotted
/// domain, no spaces or control characters. Deliverability is not the point;
/// rejecting text that is plainly not an address is.
fn check_email(email: &str) -> Result<(), ApiError> {
    check_bytes("email", email, MAX_CONTACT_BYTES)?;
    let plausible = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.split('.').count() >= 2
            && domain.split('.').all(|label| !label.is_empty())
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plausible {
        return Err(ApiError::invalid(
            "email",
            "must be an address like name@example.com",
        ));
    }
    Ok(())
}

/// `value` as one of `allowed`, or a 400 listing them.
fn one_of(field: &str, value: &str, allowed: &[&'static str]) -> Result<&'static str, ApiError> {
    allowed
        .iter()
        .find(|candidate| **candidate == value)
        .copied()
        .ok_or_else(|| ApiError::invalid(field, format!("must be one of {}", allowed.join(", "))))
}

/// Makes a parse error read like the others (`field: why`), and cuts its
/// message and field to [`MAX_ERROR_BYTES`]: serde quotes the offending
/// value, which may be kilobytes long.
fn brief(mut err: ApiError) -> ApiError {
    if let Some(field) = &err.field
        && !err.message.starts_with(field.as_str())
    {
        err.message = format!("{field}: {}", err.message);
    }
    fn cut(text: &mut String) {
        if text.len() > MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
    }
    cut(&mut err.message);
    if let Some(field) = err.field.as_mut() {
        cut(field);
    }
    err
}

/// Reads a boolean query parameter.
fn flag(query: &QueryParams, name: &str) -> Result<bool, ApiError> {
    match query.get(name) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(ApiError::invalid(name, "must be true or false")),
    }
}

/// An order as the API shows it.
#[derive(Clone, Serialize)]
struct Order {
    id: String,
    item: String,
    quantity: u32,
    customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'static str>,
    status: &'static str,
    created_at: String,
}

impl Order {
    /// Whether one of the order's texts starts with `marker`.
    fn has_marker(&self, marker: &str) -> bool {
        [
            Some(&self.item),
            self.customer.as_ref(),
            self.email.as_ref(),
            self.note.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|text| text.starts_with(marker))
    }
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

    /// The entries whose order carries `marker` (all of them without one),
    /// in insertion order.
    fn matching(&self, marker: Option<&str>) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self
            .entries
            .values()
            .filter(|entry| marker.is_none_or(|marker| entry.order.has_marker(marker)))
            .collect();
        entries.sort_by_key(|entry| entry.seq);
        entries
    }
}

async fn create(
    State(state): State<AppState>,
    query: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let strict = flag(&query, "strict")?;
    let request: NewOrder = parse_json(&body).map_err(brief)?;
    let mut store = lock(&state.orders);
    let order = request.validate(store.fresh_id(), strict)?;
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

/// Every order, or those carrying `?marker=`.
async fn list(State(state): State<AppState>, query: QueryParams) -> Json<OrderList> {
    let store = lock(&state.orders);
    let orders: Vec<Order> = store
        .matching(query.get("marker"))
        .into_iter()
        .map(|entry| entry.view(state.opts.process_delay))
        .collect();
    Json(OrderList {
        count: orders.len(),
        orders,
    })
}

/// `{"count": n}`: the number of orders, or of those carrying `?marker=`,
/// without copying them.
async fn count(State(state): State<AppState>, query: QueryParams) -> Json<serde_json::Value> {
    let count = lock(&state.orders).matching(query.get("marker")).len();
    Json(json!({ "count": count }))
}

/// Deletes every order carrying `?marker=` (required and not empty, so a
/// stray request cannot empty the store) and answers `{"deleted": n}`.
async fn purge(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<serde_json::Value>, ApiError> {
    let marker = query
        .get("marker")
        .filter(|marker| !marker.is_empty())
        .ok_or_else(|| ApiError::invalid("marker", "is required and must not be empty"))?;
    let mut store = lock(&state.orders);
    let before = store.entries.len();
    store
        .entries
        .retain(|_, entry| !entry.order.has_marker(marker));
    let deleted = before - store.entries.len();
    Ok(Json(json!({ "deleted": deleted })))
}

fn order_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "order not found")
}

/// Answers the request body unchanged, with the request's content type
/// (`application/octet-stream` without one). The sandbox's request body cap
/// applies, so an oversize body gets a 413.
async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Real sandboxes on loopback ports, driven over sockets with hyper's
    //! client; the anomalies come from the workload's own mutator.

    use crate::probe::mutate::{self, Mutation};
    use crate::sandbox::SandboxOptions;
    use axum::http::{Method, Request, StatusCode, header};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::{Value, json};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::TcpStream;
    use tokio::time::{Instant, timeout};

    /// The longest any one test may run.
    const TEST_LIMIT: Duration = Duration::from_secs(10);

    use crate::sandbox::tests::{Reply, start};

    /// One request on a fresh connection, the whole answer read.
    async fn send(
        addr: SocketAddr,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, addr.to_string());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let (parts, body) = sender.send_request(request).await.unwrap().into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        send(addr, Method::POST, path, Some("application/json"), bytes).await
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        send(addr, Method::GET, path, None, Bytes::new()).await
    }

    async fn count(addr: SocketAddr, marker: &str) -> u64 {
        let reply = get(addr, &format!("/api/orders/count?marker={marker}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()["count"].as_u64().unwrap()
    }

    /// A complete order, as a strict workload would send it.
    fn strict_order() -> Value {
        json!({
            "item": "synth-widget",
            "quantity": 3,
            "customer": "synth-4f2a9c01b7de",
            "email": "synth-ada.lovelace.4821@example.com",
            "priority": "express",
            "currency": "EUR",
        })
    }

    /// The fields each mutation is rejected for, whatever its draw: all of
    /// them, except `invalid_enum`, which only the enum-like fields (and the
    /// address check) can tell from free text.
    fn rejecting_fields(mutation: Mutation) -> Vec<String> {
        let all = [
            "item", "quantity", "customer", "email", "priority", "currency",
        ];
        let fields: &[&str] = match mutation {
            Mutation::InvalidEnum => &["email", "priority", "currency"],
            _ => &all,
        };
        fields.iter().map(|f| (*f).to_owned()).collect()
    }

    #[tokio::test]
    async fn every_mutation_of_a_strict_order_is_rejected_naming_the_field() {
        timeout(TEST_LIMIT, async {
            let sandbox = start(SandboxOptions::default()).await;
            let addr = sandbox.addr();
            let created = post_json(addr, "/api/orders?strict=true", &strict_order()).await;
            assert_eq!(created.status, StatusCode::CREATED);

            let mut rng = ChaCha8Rng::seed_from_u64(1);
            for mutation in Mutation::ALL {
                for field in rejecting_fields(mutation) {
                    // 300 bytes passes the body cap but no field's cap; 60,000
                    // is most of the 64 KiB cap, so it is the field check
                    // (not the body limit) that rejects it.
                    for oversize in [300, 60_000] {
                        let mut body = strict_order();
                        let fields = [field.clone()];
                        let description =
                            mutate::apply(&mut body, mutation, &fields, oversize, &mut rng)
                                .unwrap();
                        assert_eq!(description, format!("{}: {field}", mutation.as_str()));
                        let reply = post_json(addr, "/api/orders?strict=true", &body).await;
                        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}");
                        let error = reply.json();
                        assert_eq!(error["field"], field.as_str(), "{description}: {error}");
                        let message = error["error"].as_str().unwrap();
                        assert!(message.starts_with(&field), "{description}: {message}");
                        // An oversize value is not echoed back whole.
                        assert!(reply.body.len() < 600, "{description}: {message}");
                    }
                }
            }
            assert_eq!(count(addr, "").await, 1, "a mutated order was stored");
            sandbox.shutdown().await;
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn strict_requires_the_optional_fields_and_lax_keeps_old_clients_working() {
        timeout(TEST_LIMIT, async {
            let sandbox = start(SandboxOptions::default()).await;
            let addr = sandbox.addr();
            let old = json!({"item": "widget", "quantity": 1});
            let lax = post_json(addr, "/api/orders", &old).await;
            assert_eq!(lax.status, StatusCode::CREATED);
            let order = lax.json();
            assert_eq!(order["priority"], "standard");
            assert_eq!(order["customer"], Value::Null);
            assert!(order.get("email").is_none() && order.get("currency").is_none());

            let strict = post_json(addr, "/api/orders?strict=true", &old).await;
            assert_eq!(strict.status, StatusCode::BAD_REQUEST);
            assert_eq!(strict.json()["field"], "customer");

            // Without strict, dropping an optional field is accepted.
            let mut partial = strict_order();
            partial.as_object_mut().unwrap().remove("priority");
            assert_eq!(
                post_json(addr, "/api/orders", &partial).await.status,
                StatusCode::CREATED
            );
            let strict = post_json(addr, "/api/orders?strict=1", &partial).await;
            assert_eq!(strict.status, StatusCode::BAD_REQUEST);
            assert_eq!(strict.json()["field"], "priority");

            let bad_flag = post_json(addr, "/api/orders?strict=yes", &old).await;
            assert_eq!(bad_flag.status, StatusCode::BAD_REQUEST);
            assert_eq!(bad_flag.json()["field"], "strict");

            let full = post_json(addr, "/api/orders?strict=true", &strict_order()).await;
            assert_eq!(full.status, StatusCode::CREATED);
            let order = full.json();
            for field in ["item", "customer", "email", "priority", "currency"] {
                assert_eq!(order[field], strict_order()[field], "{field}");
            }

            // Limits at their edges: 256 bytes of customer pass, 257 do not;
            // an address without a domain does not; an enum is case-sensitive.
            let edges = [
                ("customer", json!("c".repeat(256)), true),
                ("customer", json!("c".repeat(257)), false),
                ("email", json!("ada@example"), false),
                ("email", json!("ada lovelace@example.com"), false),
                ("email", json!("@example.com"), false),
                ("priority", json!("standard"), true),
                ("priority", json!("Express"), false),
                ("currency", json!("eur"), false),
                ("currency", json!("USD"), true),
            ];
            for (field, value, ok) in edges {
                let mut body = strict_order();
                body[field] = value.clone();
                let reply = post_json(addr, "/api/orders?strict=true", &body).await;
                if ok {
                    assert_eq!(reply.status, StatusCode::CREATED, "{field} = {value}");
                } else {
                    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field} = {value}");
                    assert_eq!(reply.json()["field"], field, "{field} = {value}");
                }
            }
            sandbox.shutdown().await;
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn orders_are_counted_listed_and_purged_by_marker() {
        timeout(TEST_LIMIT, async {
            let sandbox = start(SandboxOptions::default()).await;
            let addr = sandbox.addr();
            for (item, customer) in [
                ("synth-a", None),
                ("widget", Some("synth-b")),
                ("widget", None),
                ("qa-c", None),
            ] {
                let mut body = json!({"item": item, "quantity": 1});
                if let Some(customer) = customer {
                    body["customer"] = json!(customer);
                }
                assert_eq!(
                    post_json(addr, "/api/orders", &body).await.status,
                    StatusCode::CREATED
                );
            }
            let mut body = strict_order();
            body["item"] = json!("gadget");
            body["customer"] = json!("ada");
            // Only the email carries the marker.
            post_json(addr, "/api/orders?strict=true", &body).await;

            assert_eq!(count(addr, "synth-").await, 3);
            assert_eq!(count(addr, "qa-").await, 1);
            assert_eq!(get(addr, "/api/orders/count").await.json()["count"], 5);
            let listed = get(addr, "/api/orders?marker=synth-").await.json();
            assert_eq!(listed["count"], 3);
            let items: Vec<&str> = listed["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["item"].as_str().unwrap())
                .collect();
            assert_eq!(items, ["synth-a", "widget", "gadget"]);

            let refused = send(addr, Method::DELETE, "/api/orders", None, Bytes::new()).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
            assert_eq!(refused.json()["field"], "marker");
            let purged = send(
                addr,
                Method::DELETE,
                "/api/orders?marker=synth-",
                None,
                Bytes::new(),
            )
            .await;
            assert_eq!(purged.json(), json!({"deleted": 3}));
            assert_eq!(count(addr, "synth-").await, 0);
            assert_eq!(count(addr, "").await, 2);
            sandbox.shutdown().await;
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_order_is_processed_after_the_delay_then_deleted_leaving_nothing() {
        timeout(TEST_LIMIT, async {
            let delay = Duration::from_millis(150);
            let sandbox = start(SandboxOptions {
                process_delay: delay,
                ..SandboxOptions::default()
            })
            .await;
            let addr = sandbox.addr();
            let created_at = Instant::now();
            let created = post_json(addr, "/api/orders?strict=true", &strict_order()).await;
            let location = created.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
            let mut polls = 0;
            loop {
                let order = get(addr, &location).await.json();
                polls += 1;
                if order["status"] == "processed" {
                    break;
                }
                assert_eq!(order["status"], "pending");
                assert!(
                    created_at.elapsed() < Duration::from_secs(3),
                    "never processed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(created_at.elapsed() >= delay);
            assert!(polls > 1, "processed at once");

            let deleted = send(addr, Method::DELETE, &location, None, Bytes::new()).await;
            assert_eq!(deleted.status, StatusCode::NO_CONTENT);
            assert_eq!(get(addr, &location).await.status, StatusCode::NOT_FOUND);
            assert_eq!(count(addr, "synth-").await, 0);
            sandbox.shutdown().await;
        })
        .await
        .unwrap();
    }

    /// The hook a flow test uses to fail the "fetch the order" step: a
    /// fault rule on `GET /api/orders/ord_` that is used up after one hit.
    #[tokio::test]
    async fn a_fault_rule_fails_fetching_an_order_once() {
        timeout(TEST_LIMIT, async {
            let sandbox = start(SandboxOptions::default()).await;
            let addr = sandbox.addr();
            let created = post_json(addr, "/api/orders", &strict_order()).await;
            let location = created.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
            let rule = json!({
                "method": "GET",
                "path_prefix": "/api/orders/ord_",
                "status": 503,
                "remaining": 1,
            });
            let added = post_json(addr, "/_sandbox/faults", &rule).await;
            assert_eq!(added.status, StatusCode::CREATED);
            // Counting is not fetching: the rule leaves it alone.
            assert_eq!(count(addr, "synth-").await, 1);
            let faulted = get(addr, &location).await;
            assert_eq!(faulted.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(faulted.json()["error"], "fault injected");
            assert_eq!(get(addr, &location).await.status, StatusCode::OK);
            sandbox.shutdown().await;
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn echo_answers_the_exact_bytes_and_content_type() {
        timeout(TEST_LIMIT, async {
            let sandbox = start(SandboxOptions::default()).await;
            let addr = sandbox.addr();
            let body: Vec<u8> = (0..=255u8)
                .chain(b"{\"a\": 1}\r\n".iter().copied())
                .collect();
            let kind = "application/x-synthetic; charset=binary";
            let reply = send(addr, Method::POST, "/echo", Some(kind), body.clone()).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.headers[header::CONTENT_TYPE], kind);
            assert_eq!(reply.body, body);

            let reply = send(addr, Method::POST, "/echo", None, b"plain".to_vec()).await;
            assert_eq!(
                reply.headers[header::CONTENT_TYPE],
                "application/octet-stream"
            );
            assert_eq!(reply.body, &b"plain"[..]);

            let empty = send(
                addr,
                Method::POST,
                "/echo",
                Some("text/plain"),
                Bytes::new(),
            )
            .await;
            assert_eq!(empty.status, StatusCode::OK);
            assert!(empty.body.is_empty());

            let cap = 64 * 1024;
            let full = vec![b'x'; cap];
            let reply = send(addr, Method::POST, "/echo", None, full.clone()).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, full);
            let over = vec![b'x'; cap + 1];
            let reply = send(addr, Method::POST, "/echo", None, over).await;
            assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
            sandbox.shutdown().await;
        })
        .await
        .unwrap();
    }
}
