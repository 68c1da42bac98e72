//! Scalar parameters (R-PAR-1..4, R-PAR-7): load with defaults, save a page whole or not at all.
use super::{audit, Services};
use crate::domain::parameters::{validate_group, ParameterGroup, ParameterKind, Parameters};
use crate::domain::views::ParameterFieldView;
use crate::entity::parameter;
use crate::error::{ServiceError, ServiceResult};
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set, TransactionTrait};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use crate::ledger::settings::load_parameters as load;

pub fn fields(params: &Parameters, group: ParameterGroup) -> Vec<ParameterFieldView> {
    group
        .definitions()
        .map(|d| ParameterFieldView {
            key: d.key.to_string(),
            label: d.label.to_string(),
            help: d.help.to_string(),
            yes_no: d.kind == ParameterKind::YesNo,
            suffix: match d.kind {
                ParameterKind::YesNo => String::new(),
                ParameterKind::Days { min, max } => format!("days ({min}–{max})"),
                ParameterKind::Percent => "% (0–100)".to_string(),
                ParameterKind::Units { .. } => "in the invoice's currency".to_string(),
            },
            value: params.raw(d.key).to_string(),
        })
        .collect()
}

/// Sets some parameters of `group`, keeping the others as they are (a page saves its whole group):
/// the demo's and the benchmarks' settings, and the tests'.
pub async fn save_some(s: &Services, actor: &str, group: ParameterGroup, values: &[(&str, &str)]) -> ServiceResult<Parameters> {
    let current = load(&s.db).await?;
    let mut input: BTreeMap<String, String> = group.definitions().map(|d| (d.key.to_string(), current.raw(d.key).to_string())).collect();
    for (k, v) in values {
        input.insert(k.to_string(), v.to_string());
    }
    save_group(s, actor, group, &input).await
}

/// Validates and stores one page of parameters. Any invalid field refuses the whole submission and
/// nothing changes. Only changed values are written and audited.
pub async fn save_group(
    s: &Services,
    actor: &str,
    group: ParameterGroup,
    input: &BTreeMap<String, String>,
) -> ServiceResult<Parameters> {
    let values = validate_group(group, input).map_err(ServiceError::Validation)?;
    let txn = s.db.begin().await?;
    let current = load(&txn).await?;
    let (mut before, mut after) = (Map::new(), Map::new());
    for (key, value) in &values {
        if current.raw(key) == value {
            continue;
        }
        before.insert(key.to_string(), Value::from(current.raw(key)));
        after.insert(key.to_string(), Value::from(value.as_str()));
        parameter::Entity::insert(parameter::ActiveModel {
            key: Set(key.to_string()),
            value: Set(value.clone()),
            changed_at: Set(s.now()),
            changed_by: Set(actor.to_string()),
        })
        .on_conflict(
            OnConflict::column(parameter::Column::Key)
                .update_columns([parameter::Column::Value, parameter::Column::ChangedAt, parameter::Column::ChangedBy])
                .to_owned(),
        )
        .exec(&txn)
        .await?;
    }
    if !after.is_empty() {
        audit::record(&txn, s.now(), actor, "parameters.update", group.title(), Some(before.into()), Some(after.into()))
            .await?;
    }
    let saved = load(&txn).await?;
    txn.commit().await?;
    Ok(saved)
}
