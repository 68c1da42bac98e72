//! The settings every decision reads: the features (R-FEA) and the parameters (R-PAR), as stored.
use crate::db::for_update;
use crate::domain::features::{Feature, FeatureSet};
use crate::domain::parameters::Parameters;
use crate::entity::{feature, parameter};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement};

pub(crate) async fn load_rows(db: &impl ConnectionTrait, lock: bool) -> Result<FeatureSet, DbErr> {
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
/// on the invoicing's path (issue #3). The same as [`load`] and [`load_parameters`].
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

/// The parameters with their defaults (R-PAR-1..4).
pub async fn load_parameters(db: &impl ConnectionTrait) -> Result<Parameters, DbErr> {
    let rows = parameter::Entity::find().all(db).await?;
    Ok(Parameters::from_stored(rows.into_iter().map(|r| (r.key, r.value))))
}

