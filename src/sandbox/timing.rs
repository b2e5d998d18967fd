//! Routes that answer late: a fixed delay and a latency sampled from a
//! distribution, with optional injected errors.

use super::{ApiError, AppState, MAX_DELAY_MS, QueryParams, parse_u64};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Normal, Uniform};
use serde_json::{Value, json};
use std::time::Duration;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/delay/{ms}", get(delay))
        .route("/latency", get(latency))
}

/// Waits the given milliseconds (at most [`MAX_DELAY_MS`]) before answering.
async fn delay(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ms = parse_u64("ms", &raw)?.min(MAX_DELAY_MS);
    state.sleep(Duration::from_millis(ms)).await?;
    Ok(Json(json!({ "delayed_ms": ms })))
}

/// A latency distribution, in milliseconds, as `/latency` parameters describe it.
enum Latency {
    Fixed(f64),
    Uniform(Uniform<f64>),
    Normal(Normal<f64>),
    LogNormal(LogNormal<f64>),
}

impl Latency {
    /// Reads `dist` (default "fixed") and the parameters that distribution needs.
    fn from_query(query: &QueryParams) -> Result<Self, ApiError> {
        match query.get("dist").unwrap_or("fixed") {
            "fixed" => Ok(Self::Fixed(non_negative(query, "ms")?)),
            "uniform" => {
                let min = non_negative(query, "min_ms")?;
                let max = non_negative(query, "max_ms")?;
                if max < min {
                    return Err(ApiError::invalid("max_ms", "must not be below min_ms"));
                }
                Uniform::new_inclusive(min, max)
                    .map(Self::Uniform)
                    .map_err(|err| ApiError::invalid("max_ms", err))
            }
            "normal" => {
                let mean = non_negative(query, "mean_ms")?;
                let stddev = non_negative(query, "stddev_ms")?;
                Normal::new(mean, stddev)
                    .map(Self::Normal)
                    .map_err(|err| ApiError::invalid("stddev_ms", err))
            }
            "lognormal" => {
                let median = non_negative(query, "median_ms")?;
                if median <= 0.0 {
                    return Err(ApiError::invalid("median_ms", "must be above 0"));
                }
                let sigma = non_negative(query, "sigma")?;
                LogNormal::new(median.ln(), sigma)
                    .map(Self::LogNormal)
                    .map_err(|err| ApiError::invalid("sigma", err))
            }
            _ => Err(ApiError::invalid(
                "dist",
                "must be one of fixed, uniform, normal, lognormal",
            )),
        }
    }

    /// Draws one latency in milliseconds, clamped to 0..=[`MAX_DELAY_MS`].
    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let ms = match self {
            Self::Fixed(ms) => *ms,
            Self::Uniform(dist) => dist.sample(rng),
            Self::Normal(dist) => dist.sample(rng),
            Self::LogNormal(dist) => dist.sample(rng),
        };
        if ms.is_nan() {
            return 0.0;
        }
        ms.clamp(0.0, MAX_DELAY_MS as f64)
    }
}

/// A required, finite, non-negative number parameter.
fn non_negative(query: &QueryParams, name: &str) -> Result<f64, ApiError> {
    let value = query.required_f64(name)?;
    if value < 0.0 {
        return Err(ApiError::invalid(name, "must not be negative"));
    }
    Ok(value)
}

/// Sleeps a sampled latency, then answers 200 `{"latency_ms": x}` or, with
/// probability `error_rate`, 500 `{"error": "injected"}`.
async fn latency(State(state): State<AppState>, query: QueryParams) -> Result<Response, ApiError> {
    let dist = Latency::from_query(&query)?;
    let error_rate = query.f64("error_rate")?.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&error_rate) {
        return Err(ApiError::invalid(
            "error_rate",
            "must be between 0.0 and 1.0",
        ));
    }
    // The thread-local generator is not `Send`, so draw before waiting.
    let (ms, fail) = {
        let mut rng = rand::rng();
        (dist.sample(&mut rng), rng.random_bool(error_rate))
    };
    state
        .sleep(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default())
        .await?;
    Ok(if fail {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": "injected" })),
        )
            .into_response()
    } else {
        Json(json!({ "latency_ms": ms })).into_response()
    })
}
