//! Feature switches, persisted. Toggles run the prerequisite rules of
//! [`crate::domain::features`] inside a transaction that holds the feature rows (R-FEA-1..3).
use super::{audit, Services};
pub(crate) use crate::ledger::settings::load_rows;
pub use crate::ledger::settings::{load, load_with_parameters};
use crate::domain::features::{Feature, FeatureSet};
use crate::domain::views::{FeatureView, FeaturesOverview};
use crate::entity::feature;
use crate::error::ServiceResult;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, DbErr, EntityTrait, Set, TransactionTrait};
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
