//! Feature switches, persisted. Toggles run the prerequisite rules of
//! [`crate::domain::features`] inside a transaction that holds the feature rows (R-FEA-1..3).
use super::{audit, for_update, Services};
use crate::domain::features::{Feature, FeatureSet};
use crate::domain::parameters::Parameters;
use crate::domain::views::{FeatureView, FeaturesOverview};
use crate::entity::feature;
use crate::error::ServiceResult;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set, Statement, TransactionTrait};
use serde_json::json;

/// Makes sure every feature has a row (off), so toggles can lock the whole set.
pub async fn ensure_rows(s: &Services) -> Result<(), DbErr> {
    let existing: Vec<String> = feature::Entity::find().all(&s.db).await?.into_iter().map(|r| r.key).collect();
    let missing: Vec<feature::ActiveModel> = Feature::ALL
        .into_iter()
        .filter(|f| !existing.iter().any(|k| k == f.key()))
        .map(|f| feature::ActiveModel {
            key: Set(f.key().to_string()),
            enabled: Set(false),
            changed_at: Set(s.now()),
            changed_by: Set(audit::SYSTEM.to_string()),
        })
        .collect();
    if !missing.is_empty() {
        feature::Entity::insert_many(missing)
            .on_conflict(OnConflict::column(feature::Column::Key).do_nothing().to_owned())
            .exec_without_returning(&s.db)
            .await?;
    }
    Ok(())
}

async fn load_rows(db: &impl ConnectionTrait, lock: bool) -> Result<FeatureSet, DbErr> {
    let q = feature::Entity::find();
    let q = if lock { for_update(q, db) } else { q };
    let rows = q.all(db).await?;
    Ok(FeatureSet::new(rows.into_iter().filter(|r| r.enabled).filter_map(|r| Feature::from_key(&r.key))))
}

pub async fn load(db: &impl ConnectionTrait) -> Result<FeatureSet, DbErr> {
    load_rows(db, false).await
}

/// The features and the parameters, read in one statement: what the payment pipeline reads
/// before each capture decision (R-CAP-2), where on PostgreSQL every statement is a round trip
/// on the invoicing's path (issue #3). The same as [`load`] and [`super::parameters::load`].
pub async fn load_with_parameters(db: &impl ConnectionTrait) -> Result<(FeatureSet, Parameters), DbErr> {
    const BOTH: &str = "SELECT 'feature' AS kind, key, CASE WHEN enabled THEN 'on' ELSE 'off' END AS value FROM features \
                        UNION ALL SELECT 'parameter' AS kind, key, value FROM parameters";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), BOTH)).await?;
    let (mut enabled, mut stored) = (Vec::new(), Vec::new());
    for row in rows {
        let (kind, key, value): (String, String, String) = (row.try_get("", "kind")?, row.try_get("", "key")?, row.try_get("", "value")?);
        match kind.as_str() {
            "feature" if value == "on" => enabled.extend(Feature::from_key(&key)),
            "parameter" => stored.push((key, value)),
            _ => {}
        }
    }
    Ok((FeatureSet::new(enabled), Parameters::from_stored(stored)))
}

/// Turns `feature` on or off for `actor`, refusing what the prerequisite rules refuse. Audited.
pub async fn set(s: &Services, actor: &str, feature: Feature, enable: bool) -> ServiceResult<FeatureSet> {
    let txn = s.db.begin().await?;
    let mut set = load_rows(&txn, true).await?;
    let was = set.is_enabled(feature);
    set.set(feature, enable)?;
    if was != enable {
        feature::ActiveModel {
            key: Set(feature.key().to_string()),
            enabled: Set(enable),
            changed_at: Set(s.now()),
            changed_by: Set(actor.to_string()),
        }
        .update(&txn)
        .await?;
        audit::record(
            &txn,
            s.now(),
            actor,
            if enable { "feature.enable" } else { "feature.disable" },
            feature.name(),
            Some(json!({ "enabled": was })),
            Some(json!({ "enabled": enable })),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(set)
}

pub fn overview(set: &FeatureSet) -> FeaturesOverview {
    let features = Feature::ALL
        .into_iter()
        .map(|f| FeatureView {
            feature: f,
            enabled: set.is_enabled(f),
            prerequisites: f.prerequisites().into_iter().map(|p| (p, set.is_enabled(p))).collect(),
            required_by: set.enabled_dependents(f),
        })
        .collect();
    FeaturesOverview { features, warnings: set.conflict_warnings() }
}
