//! Service tests against real databases: every test runs on SQLite and on PostgreSQL.
use chrono::Duration;
use payments::db_test;
use payments::domain::features::Feature;
use payments::domain::parameters::{keys, ParameterGroup};
use payments::entity::{audit_log, connector_merchant_property, pre_authorization_duration};
use payments::error::ServiceError;
use payments::service::access::{self, NewUser, SignInError};
use payments::service::bootstrap::{bootstrap, BootstrapOptions};
use payments::service::{features, parameters, setup, Services};
use payments::Role;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use std::collections::BTreeMap;

async fn audit_count(s: &Services, action: &str) -> u64 {
    audit_log::Entity::find().filter(audit_log::Column::Action.eq(action)).count(&s.db).await.unwrap()
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const BASE: [Feature; 5] = [
    Feature::UnifiedPaymentPostingJournalDefaults,
    Feature::OmniChannelPayments,
    Feature::DuplicatePaymentProtection,
    Feature::RefundsOverMultipleCaptures,
    Feature::ManualVoidOfExpiredLines,
];

db_test!(features_are_off_by_default_and_toggles_follow_prerequisites, |db| {
    // R-FEA-1, R-FEA-2
    let s = &db.services;
    features::ensure_rows(s).await.unwrap();
    assert_eq!(features::load(&s.db).await.unwrap().enabled().count(), 0);
    let err = features::set(s, "admin", Feature::OmniChannelCommerceOrderPayments, true).await.unwrap_err();
    assert_eq!(err.code(), "PS_FEATURE_PREREQUISITES");
    assert!(err.to_string().contains("Omni-channel payments"));
    assert!(!features::load(&s.db).await.unwrap().is_enabled(Feature::OmniChannelCommerceOrderPayments));
    assert_eq!(audit_count(s, "feature.enable").await, 0, "a refused toggle is not audited as done");
    for f in BASE {
        features::set(s, "admin", f, true).await.unwrap();
    }
    features::set(s, "admin", Feature::OmniChannelCommerceOrderPayments, true).await.unwrap();
    let set = features::load(&s.db).await.unwrap();
    assert!(set.is_enabled(Feature::OmniChannelCommerceOrderPayments));
    assert_eq!(audit_count(s, "feature.enable").await, 6);
    let err = features::set(s, "admin", Feature::DuplicatePaymentProtection, false).await.unwrap_err();
    assert_eq!(err.code(), "PS_FEATURE_REQUIRED_BY");
    assert!(features::load(&s.db).await.unwrap().is_enabled(Feature::DuplicatePaymentProtection));
    // Setting a feature to the state it has is accepted and not audited again.
    features::set(s, "admin", Feature::OmniChannelPayments, true).await.unwrap();
    assert_eq!(audit_count(s, "feature.enable").await, 6);
});

db_test!(an_invalid_parameter_page_changes_nothing, |db| {
    // R-PAR-7
    let s = &db.services;
    let bad = form(&[
        (keys::CREDIT_CARD_AUTHORIZATION, "no"),
        (keys::CARDS_PAYMENT_STATUS_MONITORING, "yes"),
        (keys::DAYS_BEFORE_EXPIRED, "400"),
        (keys::RENEW_DAYS_BEFORE_EXPIRY, "0"),
        (keys::TERMINATE_APPROVAL_FROM, "0"),
    ]);
    let err = parameters::save_group(s, "admin", ParameterGroup::AccountsReceivable, &bad).await.unwrap_err();
    let ServiceError::Validation(fields) = err else { panic!("expected a validation error") };
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].field, keys::DAYS_BEFORE_EXPIRED);
    let p = parameters::load(&s.db).await.unwrap();
    assert!(p.credit_card_authorization(), "the valid fields of a refused page are not saved either");
    assert!(!p.cards_payment_status_monitoring());
    assert_eq!(audit_count(s, "parameters.update").await, 0);

    let good = form(&[
        (keys::CREDIT_CARD_AUTHORIZATION, "no"),
        (keys::CARDS_PAYMENT_STATUS_MONITORING, "yes"),
        (keys::DAYS_BEFORE_EXPIRED, "30"),
        (keys::RENEW_DAYS_BEFORE_EXPIRY, "0"),
        (keys::TERMINATE_APPROVAL_FROM, "0"),
    ]);
    parameters::save_group(s, "admin", ParameterGroup::AccountsReceivable, &good).await.unwrap();
    let p = parameters::load(&s.db).await.unwrap();
    assert!(!p.credit_card_authorization());
    assert!(p.cards_payment_status_monitoring());
    assert_eq!(p.days_before_expired(), 30);
    assert_eq!(audit_count(s, "parameters.update").await, 1);
    parameters::save_group(s, "admin", ParameterGroup::AccountsReceivable, &good).await.unwrap();
    assert_eq!(audit_count(s, "parameters.update").await, 1, "saving unchanged values writes no audit entry");
});

db_test!(percentages_round_trip_exactly, |db| {
    // R-MON-2: what is stored is what is read back, on both databases.
    let s = &db.services;
    let values = form(&[(keys::DEFAULT_DEPOSIT_PERCENT, "33.33"), (keys::CANCELLATION_CHARGE_PERCENT, "0.01")]);
    parameters::save_group(s, "admin", ParameterGroup::Commerce, &values).await.unwrap();
    let p = parameters::load(&s.db).await.unwrap();
    assert_eq!(p.default_deposit_percent().to_string(), "33.33");
    assert_eq!(p.cancellation_charge_percent().to_string(), "0.01");
});

db_test!(sign_in_locks_an_account_after_repeated_failures, |db| {
    let s = &db.services;
    access::create_user(
        s,
        "test",
        NewUser { username: "Fiona".into(), display_name: "Fiona".into(), password: "correct horse battery".into(), roles: vec![Role::Finance] },
    )
    .await
    .unwrap();
    let last = || async { access::list_users(&s.db).await.unwrap().into_iter().find(|u| u.username == "fiona").unwrap().last_sign_in };
    assert_eq!(last().await, None, "never signed in yet (issue #43: the Users page shows it)");
    let ok = access::sign_in(s, " fiona ", "correct horse battery", "10.0.0.1").await.unwrap();
    assert_eq!(ok.roles, vec![Role::Finance]);
    let first_sign_in = s.now();
    assert_eq!(last().await, Some(first_sign_in));
    for _ in 0..access::MAX_FAILED_SIGN_INS - 1 {
        assert!(matches!(access::sign_in(s, "fiona", "wrong", "10.0.0.1").await, Err(SignInError::InvalidCredentials)));
    }
    assert!(matches!(access::sign_in(s, "fiona", "wrong", "10.0.0.1").await, Err(SignInError::Locked { .. })));
    assert!(
        matches!(access::sign_in(s, "fiona", "correct horse battery", "10.0.0.1").await, Err(SignInError::Locked { .. })),
        "the right password is refused while locked"
    );
    assert_eq!(last().await, Some(first_sign_in), "failed and refused sign-ins are not sign-ins");
    db.clock.advance(Duration::minutes(access::LOCK_MINUTES + 1));
    access::sign_in(s, "fiona", "correct horse battery", "10.0.0.1").await.unwrap();
    assert_eq!(last().await, Some(s.now()));
    assert_eq!(audit_count(s, "sign_in.failed").await, 5);
    assert_eq!(audit_count(s, "sign_in.refused_locked").await, 1);
    // Unknown accounts are throttled alike, so the lock does not reveal which accounts exist.
    for _ in 0..access::MAX_FAILED_SIGN_INS {
        let _ = access::sign_in(s, "nobody", "x", "10.0.0.1").await;
    }
    assert!(matches!(access::sign_in(s, "nobody", "x", "10.0.0.1").await, Err(SignInError::Locked { .. })));
    // A name no account can have is refused without being written to the audit log or throttle.
    let before = audit_log::Entity::find().count(&s.db).await.unwrap();
    let junk = "x".repeat(10_000);
    assert!(matches!(access::sign_in(s, &junk, "x", "10.0.0.1").await, Err(SignInError::InvalidCredentials)));
    assert_eq!(audit_log::Entity::find().count(&s.db).await.unwrap(), before);
});

db_test!(a_lock_keeps_out_only_the_address_that_guessed_and_doubles_each_time, |db| {
    // Issue #40: five wrong passwords from one address every 15 minutes used to keep the account
    // locked for everyone. Now the owner, at another address, signs in throughout.
    let s = &db.services;
    access::create_user(s, "test", NewUser { username: "gil".into(), display_name: "Gil".into(), password: "correct horse battery".into(), roles: vec![Role::Finance] })
        .await
        .unwrap();
    let attacker = "203.0.113.9";
    let owner = "198.51.100.7";
    let mut lock_lengths = Vec::new();
    for _round in 0..4 {
        let mut until = None;
        for _ in 0..access::MAX_FAILED_SIGN_INS {
            if let Err(SignInError::Locked { until: u }) = access::sign_in(s, "gil", "wrong", attacker).await {
                until = Some(u);
            }
        }
        let until = until.expect("the attacker's address is locked after five failures");
        lock_lengths.push((until - s.now()).num_minutes());
        assert!(matches!(access::sign_in(s, "gil", "correct horse battery", attacker).await, Err(SignInError::Locked { .. })));
        access::sign_in(s, "gil", "correct horse battery", owner).await.expect("the owner is never locked out by someone else's guesses");
        db.clock.advance(until - s.now() + Duration::seconds(1));
    }
    assert_eq!(lock_lengths, vec![15, 30, 60, 120], "each further lock of the same address lasts twice as long");
    assert_eq!(access::lock_minutes(40), access::MAX_LOCK_MINUTES);
    // A password reset forgets the failures.
    access::set_password(s, "cli", "gil", "another long password".into()).await.unwrap();
    assert!(matches!(access::sign_in(s, "gil", "another long password", attacker).await, Ok(_)));
});

db_test!(disabling_a_user_or_resetting_their_password_ends_their_sessions, |db| {
    use access::SignedIn;
    let s = &db.services;
    let admin_id = access::create_user(s, "test", NewUser { username: "ada".into(), display_name: "Ada".into(), password: "correct horse battery".into(), roles: vec![Role::Administrator] })
        .await
        .unwrap();
    let id = access::create_user(s, "test", NewUser { username: "hal".into(), display_name: "Hal".into(), password: "correct horse battery".into(), roles: vec![Role::Finance] })
        .await
        .unwrap();
    let admin = access::load_user(&s.db, admin_id).await.unwrap().unwrap();
    let lifetime = Duration::hours(12);
    let session = SignedIn::new(id, s.now(), lifetime);
    assert!(access::session_user(&s.db, session, s.now()).await.unwrap().is_some());
    // Absolute lifetime: however active, the session ends 12 hours after sign-in.
    assert!(access::session_user(&s.db, session, s.now() + Duration::hours(12) - Duration::seconds(1)).await.unwrap().is_some());
    assert!(access::session_user(&s.db, session, s.now() + Duration::hours(12)).await.unwrap().is_none());
    // An administrator cannot disable themselves.
    assert!(access::set_disabled(s, "ada", Some(admin.id), admin.id, true).await.is_err());
    db.clock.advance(Duration::seconds(1));
    access::set_disabled(s, "ada", Some(admin.id), id, true).await.unwrap();
    assert!(access::session_user(&s.db, session, s.now()).await.unwrap().is_none(), "disabled: the session is over at once");
    assert!(matches!(access::sign_in(s, "hal", "correct horse battery", "10.0.0.1").await, Err(SignInError::Disabled)));
    assert!(access::list_users(&s.db).await.unwrap().iter().any(|u| u.username == "hal" && u.disabled));
    db.clock.advance(Duration::seconds(1));
    access::set_disabled(s, "cli", None, id, false).await.unwrap();
    assert!(access::session_user(&s.db, session, s.now()).await.unwrap().is_none(), "enabling again does not revive old sessions");
    access::sign_in(s, "hal", "correct horse battery", "10.0.0.1").await.unwrap();
    let fresh = SignedIn::new(id, s.now(), lifetime);
    assert!(access::session_user(&s.db, fresh, s.now()).await.unwrap().is_some());
    db.clock.advance(Duration::seconds(1));
    access::set_password(s, "cli", "hal", "a brand new password".into()).await.unwrap();
    assert!(access::session_user(&s.db, fresh, s.now()).await.unwrap().is_none(), "a password reset ends the user's sessions");
    assert_eq!(audit_count(s, "user.disable").await, 1);
    assert_eq!(audit_count(s, "user.enable").await, 1);
});

db_test!(at_most_a_few_passwords_are_hashed_at_once, |db| {
    // Issue #40: each Argon2 hash takes about 19 MiB; 12 sign-ins at once must not hash 12 at once.
    let s = db.services.clone();
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { access::sign_in(&s, "nobody", "x", &format!("10.0.1.{i}")).await })
        })
        .collect();
    for c in calls {
        assert!(matches!(c.await.unwrap(), Err(SignInError::InvalidCredentials)));
    }
    let peak = access::peak_hashes();
    assert!(peak <= access::MAX_CONCURRENT_HASHES, "at most {} at once, seen {peak}", access::MAX_CONCURRENT_HASHES);
    assert!(peak >= 2, "the sign-ins did hash side by side (peak {peak})");
});

db_test!(users_are_validated_and_an_admin_keeps_their_own_role, |db| {
    let s = &db.services;
    let err = access::create_user(
        s,
        "admin",
        NewUser { username: "a b".into(), display_name: "".into(), password: "short".into(), roles: vec![] },
    )
    .await
    .unwrap_err();
    let ServiceError::Validation(fields) = err else { panic!("expected validation") };
    let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(names, vec!["username", "display_name", "password", "roles"]);
    assert_eq!(access::count_users(&s.db).await.unwrap(), 0);
    let id = access::create_user(
        s,
        "test",
        NewUser { username: "root".into(), display_name: "Root".into(), password: "long enough password".into(), roles: vec![Role::Administrator] },
    )
    .await
    .unwrap();
    let me = access::load_user(&s.db, id).await.unwrap().unwrap();
    let err = access::set_roles(s, &me, id, vec![Role::Finance]).await.unwrap_err();
    assert!(err.to_string().contains("own Administrator role"));
    assert_eq!(access::load_user(&s.db, id).await.unwrap().unwrap().roles, vec![Role::Administrator]);
    let dup = access::create_user(
        s,
        "test",
        NewUser { username: "ROOT".into(), display_name: "Again".into(), password: "long enough password".into(), roles: vec![Role::Finance] },
    )
    .await
    .unwrap_err();
    assert!(dup.to_string().contains("already taken"));
});

db_test!(demo_bootstrap_is_idempotent, |db| {
    let s = &db.services;
    let opts = BootstrapOptions { demo: true, admin_password: None, demo_password: Some("demo password 123".into()), demo_orders: false };
    let first = bootstrap(s, &opts).await.unwrap();
    // Issue #40: a password the operator supplied is never handed back to be printed.
    assert!(first.created_users.iter().all(|u| u.generated_password.is_none()), "{:?}", first.created_users);
    assert!(!format!("{:?}", first.created_users).contains("demo password"));
    let names: Vec<_> = first.created_users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, vec!["admin", "finance", "callcenter", "supervisor"]);
    assert!(first.demo_data_created);
    let second = bootstrap(s, &opts).await.unwrap();
    assert!(second.created_users.is_empty() && !second.demo_data_created);
    assert_eq!(access::count_users(&s.db).await.unwrap(), 4);
    let sup = access::sign_in(s, "supervisor", "demo password 123", "10.0.0.1").await.unwrap();
    assert_eq!(sup.roles, vec![Role::Finance, Role::CallCenter]);
    let chans = setup::channels(&s.db).await.unwrap();
    assert_eq!(chans.len(), 3);
    let conns = setup::connectors(&s.db).await.unwrap();
    assert_eq!(conns.len(), 1);
    assert!(conns[0].is_default && conns[0].allow_multiple_partial_capture);
});

db_test!(a_first_start_without_demo_creates_only_an_administrator, |db| {
    let s = &db.services;
    let report = bootstrap(s, &BootstrapOptions::default()).await.unwrap();
    assert_eq!(report.created_users.len(), 1);
    let admin = &report.created_users[0];
    assert_eq!(admin.username, "admin");
    let password = admin.generated_password.clone().expect("a random password is generated, to be shown once");
    assert!(password.len() >= 20);
    access::sign_in(s, "admin", &password, "10.0.0.1").await.unwrap();
    assert!(setup::channels(&s.db).await.unwrap().is_empty());
});

db_test!(merchant_properties_and_durations_refuse_bad_input, |db| {
    // R-PAR-5, R-PAR-6, R-PAR-7
    let s = &db.services;
    bootstrap(s, &BootstrapOptions { demo: true, admin_password: None, demo_password: Some("demo password 123".into()), demo_orders: false })
        .await
        .unwrap();
    let conn = setup::connectors(&s.db).await.unwrap().remove(0);
    let web = setup::channels(&s.db).await.unwrap().into_iter().find(|c| c.code == "WEB").unwrap();
    let call = setup::channels(&s.db).await.unwrap().into_iter().find(|c| c.code == "CALL").unwrap();
    let before = connector_merchant_property::Entity::find().all(&s.db).await.unwrap();
    let err = setup::save_merchant_properties(s, "admin", conn.id, web.id, "perhaps", "inter ac").await.unwrap_err();
    let ServiceError::Validation(fields) = err else { panic!("expected validation") };
    assert_eq!(fields.len(), 2);
    assert_eq!(connector_merchant_property::Entity::find().all(&s.db).await.unwrap(), before);
    setup::save_merchant_properties(s, "admin", conn.id, web.id, "no", " Interac;VISA ;").await.unwrap();
    let row = connector_merchant_property::Entity::find_by_id((conn.id, web.id)).one(&s.db).await.unwrap().unwrap();
    assert!(!row.enable_request_protection);
    assert_eq!(row.non_incremental_capture_methods, "interac;visa");
    assert!(matches!(
        setup::save_merchant_properties(s, "admin", 999, web.id, "yes", "").await,
        Err(ServiceError::NotFound(_))
    ));

    let n = pre_authorization_duration::Entity::find().count(&s.db).await.unwrap();
    for (ch, ty, days) in [(web.id.to_string(), "visa", "0"), (web.id.to_string(), "paypal", "5"), ("x".into(), "visa", "5")] {
        assert!(setup::save_pre_authorization_duration(s, "admin", &ch, ty, days).await.is_err(), "{ch} {ty} {days}");
    }
    let err = setup::save_pre_authorization_duration(s, "admin", &call.id.to_string(), "visa", "5").await.unwrap_err();
    assert!(err.to_string().contains("per store"));
    assert_eq!(pre_authorization_duration::Entity::find().count(&s.db).await.unwrap(), n);
    setup::save_pre_authorization_duration(s, "admin", &web.id.to_string(), "amex", "12").await.unwrap();
    let d = setup::pre_authorization_durations(&s.db).await.unwrap();
    assert!(d.iter().any(|d| d.channel.id == web.id && d.payment_type == "amex" && d.days == 12));
    setup::delete_pre_authorization_duration(s, "admin", web.id, "amex").await.unwrap();
    assert_eq!(pre_authorization_duration::Entity::find().count(&s.db).await.unwrap(), n);
});

db_test!(exactly_one_default_connector, |db| {
    let s = &db.services;
    bootstrap(s, &BootstrapOptions { demo: true, admin_password: None, demo_password: Some("demo password 123".into()), demo_orders: false })
        .await
        .unwrap();
    let conn = setup::connectors(&s.db).await.unwrap().remove(0);
    let err = setup::save_merchant_account(s, "admin", conn.id, "yes", "no").await.unwrap_err();
    assert!(err.to_string().contains("always be a default connector"));
    setup::save_merchant_account(s, "admin", conn.id, "no", "yes").await.unwrap();
    let conn = setup::connectors(&s.db).await.unwrap().remove(0);
    assert!(conn.is_default && !conn.allow_multiple_partial_capture);
});

db_test!(writes_sent_together_store_exactly_what_was_given, |db| {
    // R-MON-2, R-PIP-2 (issue #3): statements sent in one round trip (on PostgreSQL with their
    // values written in as literals) store every value exactly, whatever its characters (the
    // execution logs' text goes this way), timestamps to the microsecond, in order. The rows are
    // parameters, a table whose rows may change (the audit log refuses updates, issue #39).
    use payments::entity::parameter;
    use payments::writes::Writes;
    use sea_orm::sea_query::{CaseStatement, Expr};
    use sea_orm::{QueryOrder, QueryTrait, Set, TransactionTrait};
    let s = &db.services;
    let texts = [
        "it's",
        "back\\slash \\' \\\\",
        "semi;\ncolon;\n",
        "$1 ? ?2 :name @p1",
        "naïve – ✓ 𝄞",
        "'); DELETE FROM audit_log; --",
        "tab\tcarriage\rreturn",
        "E'x' $$dollar$$",
        "",
    ];
    let at = payments::testing::test_epoch() + Duration::microseconds(123_457);
    let key = |i: usize| format!("writes.test/row {i}");
    let txn = s.db.begin().await.unwrap();
    let mut w = Writes::on(&txn);
    let rows = texts.iter().enumerate().map(|(i, t)| parameter::ActiveModel {
        key: Set(key(i)),
        value: Set(t.to_string()),
        changed_at: Set(at + Duration::seconds(i as i64)),
        changed_by: Set(t.to_string()),
    });
    w.push(parameter::Entity::insert_many(rows).into_query());
    // A second statement that reads what the first wrote: they run in order.
    let case = texts.iter().enumerate().fold(CaseStatement::new(), |c, (i, t)| c.case(parameter::Column::Key.eq(key(i)), Expr::value(format!("{t}|{i}"))));
    w.push(
        parameter::Entity::update_many()
            .col_expr(parameter::Column::Value, case.finally(Expr::col(parameter::Column::Value)).into())
            .filter(parameter::Column::Key.starts_with("writes.test/"))
            .into_query(),
    );
    assert_eq!(w.len(), 2);
    w.run(&txn).await.unwrap();
    txn.commit().await.unwrap();
    let stored = parameter::Entity::find().filter(parameter::Column::Key.starts_with("writes.test/")).order_by_asc(parameter::Column::Key).all(&s.db).await.unwrap();
    assert_eq!(stored.len(), texts.len());
    for (i, (row, t)) in stored.iter().zip(texts).enumerate() {
        assert_eq!(row.changed_by, t);
        assert_eq!(row.value, format!("{t}|{i}"));
        assert_eq!(row.changed_at, at + Duration::seconds(i as i64), "timestamps keep their microseconds");
    }
});

db_test!(features_and_parameters_read_together_are_what_each_reads_alone, |db| {
    // R-FEA-1, R-PAR-1, R-CAP-2 (issue #3): the pipeline reads the features and the parameters in
    // one statement; it must see exactly what each page and rule sees through its own read, with
    // nothing stored (defaults), and after toggles and saved parameters.
    let s = &db.services;
    features::ensure_rows(s).await.unwrap();
    let alone = || async { (features::load(&s.db).await.unwrap(), parameters::load(&s.db).await.unwrap()) };
    assert_eq!(features::load_with_parameters(&s.db).await.unwrap(), alone().await, "nothing on, every parameter at its default");
    payments::testing::enable_pipeline(s, true).await;
    payments::testing::set_parameters(s, ParameterGroup::Commerce, &[(keys::CANCELLATION_CHARGE_PERCENT, "12")]).await;
    payments::testing::set_parameters(s, ParameterGroup::AccountsReceivable, &[(keys::DAYS_BEFORE_EXPIRED, "30")]).await;
    let (feats, params) = features::load_with_parameters(&s.db).await.unwrap();
    assert!(feats.is_enabled(Feature::DuplicatePaymentProtection), "a feature turned on reads on");
    assert_eq!(params.raw(keys::CANCELLATION_CHARGE_PERCENT), "12");
    assert_eq!(params.days_before_expired(), 30);
    assert_eq!((feats, params), alone().await);
});

db_test!(ids_taken_before_the_insert_are_new_and_never_given_again, |db| {
    // Issue 3, R-LED-1, R-PIP-2: stage 1 takes the ids of the rows others refer to before
    // inserting them (`payments::ids`); an id so taken is one the table would have given, and no
    // later row, taken so or inserted the plain way, gets it again.
    use payments::entity::journal;
    use payments::writes::Writes;
    use sea_orm::{ActiveModelTrait, EntityName, QueryOrder, Set, TransactionTrait};
    let s = &db.services;
    let at = payments::testing::test_epoch();
    let row = |id: Option<i32>, source: &str| journal::ActiveModel {
        id: id.map_or(sea_orm::ActiveValue::NotSet, Set),
        number: Set(format!("T-{source}")),
        source: Set(source.to_string()),
        kind: Set("test".into()),
        order_id: Set(None),
        invoice_id: Set(None),
        currency: Set("USD".into()),
        prepayment: Set(false),
        description: Set(String::new()),
        posted_at: Set(at),
        customer_id: Set(None),
        tender: Set(None),
    };
    // One the plain way first, so the table has given an id.
    let plain = row(None, "plain-1").insert(&s.db).await.unwrap();
    let tables = [journal::Entity.table_name(), payments::entity::invoice::Entity.table_name()];
    let txn = s.db.begin().await.unwrap();
    let taken = payments::ids::take(&txn, &[(tables[0], 3), (tables[1], 0)]).await.unwrap();
    assert_eq!(taken.len(), 2, "one list per table asked for");
    assert!(taken[1].is_empty(), "none asked for, none taken");
    let ids = taken[0].clone();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending: {ids:?}");
    assert!(ids[0] > plain.id, "after the ids given: {ids:?} after {}", plain.id);
    let mut w = Writes::on(&txn);
    w.push_rows(ids.iter().map(|id| row(Some(*id), &format!("taken-{id}"))));
    w.run(&txn).await.unwrap();
    txn.commit().await.unwrap();
    // The plain way again, and taking again: both after every id already given.
    let after = row(None, "plain-2").insert(&s.db).await.unwrap();
    assert!(after.id > ids[2], "a plain insert after taken ids gets a new one: {} after {ids:?}", after.id);
    let txn = s.db.begin().await.unwrap();
    let again = payments::ids::take(&txn, &[(tables[0], 2)]).await.unwrap().remove(0);
    assert!(again[0] > after.id, "taken again: {again:?} after {}", after.id);
    txn.rollback().await.unwrap();
    let stored: Vec<i32> = journal::Entity::find().order_by_asc(journal::Column::Id).all(&s.db).await.unwrap().into_iter().map(|j| j.id).collect();
    let mut expected = vec![plain.id];
    expected.extend(&ids);
    expected.push(after.id);
    assert_eq!(stored, expected, "every row kept the id it was given");
});

db_test!(a_large_groups_rows_sent_together_arrive_whole_and_in_order, |db| {
    // R-PIP-2 (issue #3): a large group's rows (execution log lines, stage rows) are inserted in
    // parts on PostgreSQL, each short enough for the socket to take at once (a longer one waited
    // ~45 ms for a delayed acknowledgement), in one statement on SQLite; every row arrives, in
    // order, with an update sent after them seeing all of them.
    use payments::entity::parameter;
    use payments::writes::Writes;
    use sea_orm::{ConnectionTrait, DbBackend, QueryOrder, QueryTrait, Set, TransactionTrait};
    let s = &db.services;
    let rows = (0..250).map(|i| parameter::ActiveModel {
        key: Set(format!("writes.parts/row {i:04}")),
        value: Set(String::new()),
        changed_at: Set(payments::testing::test_epoch() + Duration::seconds(i)),
        changed_by: Set(format!("{i:04} {}", "é".repeat(150))),
    });
    let txn = s.db.begin().await.unwrap();
    let mut w = Writes::on(&txn);
    w.push_rows(rows);
    let inserts = w.len();
    w.push(parameter::Entity::update_many().col_expr(parameter::Column::Value, sea_orm::sea_query::Expr::value("seen")).filter(parameter::Column::Key.starts_with("writes.parts/")).into_query());
    match txn.get_database_backend() {
        DbBackend::Postgres => assert!(inserts > 1, "250 rows of ~320 bytes go in several inserts on PostgreSQL"),
        _ => assert_eq!(inserts, 1),
    }
    w.run(&txn).await.unwrap();
    txn.commit().await.unwrap();
    let stored = parameter::Entity::find().filter(parameter::Column::Key.starts_with("writes.parts/")).order_by_asc(parameter::Column::Key).all(&s.db).await.unwrap();
    assert_eq!(stored.len(), 250);
    for (i, row) in stored.iter().enumerate() {
        assert_eq!(row.changed_by, format!("{i:04} {}", "é".repeat(150)));
        assert_eq!(row.key, format!("writes.parts/row {i:04}"));
        assert_eq!(row.value, "seen", "the update ran after every insert");
    }
});

db_test!(writes_sent_together_count_the_rows_they_affect, |db| {
    // R-PIP-1, R-CAP-1 (issue #3): stage 1 sends its guarded move of the invoiced quantities with
    // its other writes and tells a line changed meanwhile by the rows written falling short of
    // those counted. The count covers every statement, in every part sent (on PostgreSQL 300
    // long rows go in several simple queries), and a guarded update that matches fewer rows than
    // counted shows.
    use payments::entity::parameter;
    use payments::writes::Writes;
    use sea_orm::sea_query::Expr;
    use sea_orm::{QueryTrait, Set, TransactionTrait};
    let s = &db.services;
    let row = |i: usize| parameter::ActiveModel {
        key: Set(format!("writes.count/row {i}")),
        value: Set(String::new()),
        changed_at: Set(payments::testing::test_epoch()),
        changed_by: Set(format!("{i:04}{}", "x".repeat(200))),
    };
    // Rows `subjects` move from `before` ("" is unmarked) to `after`.
    let mark = |subjects: &[&str], before: &str, after: &str| {
        parameter::Entity::update_many()
            .col_expr(parameter::Column::Value, Expr::value(after.to_string()))
            .filter(parameter::Column::Key.is_in(subjects.iter().map(|subject| format!("writes.count/{subject}"))))
            .filter(parameter::Column::Value.eq(before))
            .into_query()
    };
    let txn = s.db.begin().await.unwrap();
    let mut w = Writes::on(&txn);
    w.push_rows((0..300).map(row));
    w.push_counted(mark(&["row 1", "row 2"], "", "one"), 2);
    assert_eq!(w.counted(), Some(302));
    assert_eq!(w.run(&txn).await.unwrap(), 302, "every row inserted and both marked, as counted");
    // Row 2 changed meanwhile: a guarded move of rows 1 and 2 from "one" finds row 1 only.
    let mut w = Writes::on(&txn);
    w.push_counted(mark(&["row 2"], "one", "changed"), 1);
    w.push_counted(mark(&["row 1", "row 2"], "one", "two"), 2);
    w.push_rows((300..303).map(row));
    assert_eq!(w.counted(), Some(6));
    assert_eq!(w.run(&txn).await.unwrap(), 5, "the guarded move falls one row short of its count");
    let mut w = Writes::on(&txn);
    w.push_rows([row(303)]);
    w.push(parameter::Entity::update_many().col_expr(parameter::Column::Value, Expr::value("x")).filter(parameter::Column::Key.starts_with("writes.count/")).into_query());
    assert_eq!(w.counted(), None, "an update added without its count leaves the count unknown");
    txn.rollback().await.unwrap();
});

db_test!(a_failing_statement_among_writes_sent_together_fails_them_all, |db| {
    // R-PIP-3 (issue #3): the first error of statements sent together fails the run; the
    // caller's transaction, rolled back, leaves nothing of them (a stage's writes commit whole or
    // not at all).
    use payments::entity::parameter;
    use payments::writes::Writes;
    use sea_orm::{QueryTrait, Set, TransactionTrait};
    let s = &db.services;
    let before = parameter::Entity::find().count(&s.db).await.unwrap();
    let txn = s.db.begin().await.unwrap();
    let mut w = Writes::on(&txn);
    let row = |i: i32| parameter::ActiveModel {
        key: Set(format!("writes.fail/{i}")),
        value: Set("v".into()),
        changed_at: Set(payments::testing::test_epoch()),
        changed_by: Set("tester".into()),
    };
    w.push(parameter::Entity::insert_many([row(1), row(2)]).into_query());
    // changed_by is NOT NULL: this statement fails after the insert ran.
    w.push(
        parameter::Entity::update_many()
            .col_expr(parameter::Column::ChangedBy, sea_orm::sea_query::Expr::value(Option::<String>::None))
            .filter(parameter::Column::Key.starts_with("writes.fail/"))
            .into_query(),
    );
    w.push(parameter::Entity::insert_many([row(3)]).into_query());
    assert!(w.run(&txn).await.is_err(), "a NOT NULL violation is an error");
    txn.rollback().await.unwrap();
    assert_eq!(parameter::Entity::find().count(&s.db).await.unwrap(), before, "nothing of the writes is left");
});

db_test!(stores_and_channels_are_made_edited_and_closed_and_a_closed_one_takes_no_orders, |db| {
    // Issue #43: a store or channel is created and edited with every field checked (bad input
    // refused field by field, nothing written), its code unique whatever its case; closing it
    // stops new orders with a message naming it while its orders stay; reopened, it takes them
    // again. Every change is audited; a channel is never deleted.
    use payments::entity::{channel, sales_order};
    use payments::service::setup::ChannelForm;
    use payments::testing::{fixture, OrderBuilder};
    let s = &db.services;
    let fx = fixture(s).await;
    payments::testing::enable_pipeline(s, true).await;
    let form = |code: &str, name: &str, kind: &str, currency: &str| ChannelForm { code: code.into(), name: name.into(), kind: kind.into(), currency: currency.into(), time_zone: String::new(), connector: String::new() };
    let rows = || async { (channel::Entity::find().count(&s.db).await.unwrap(), audit_log::Entity::find().count(&s.db).await.unwrap()) };
    let before = rows().await;
    let long = "x".repeat(81);
    for (f, field) in [
        (form("", "Phone orders", "call_center", "USD"), "code"),
        (form("a", "Phone orders", "call_center", "USD"), "code"),
        (form("bad code", "Phone orders", "call_center", "USD"), "code"),
        (form("x'; DROP TABLE channels;--", "Phone orders", "call_center", "USD"), "code"),
        (form("phone", "", "call_center", "USD"), "name"),
        (form("phone", "  ", "call_center", "USD"), "name"),
        (form("phone", &long, "call_center", "USD"), "name"),
        (form("phone", "Line\nbreak", "call_center", "USD"), "name"),
        (form("phone", "Phone orders", "warehouse", "USD"), "kind"),
        (form("phone", "Phone orders", "call_center", "XYZ"), "currency"),
        (form("phone", "Phone orders", "call_center", ""), "currency"),
        (ChannelForm { time_zone: "Mars/Olympus_Mons".into(), ..form("phone", "Phone orders", "call_center", "USD") }, "time_zone"),
        (ChannelForm { time_zone: "../../etc/passwd".into(), ..form("phone", "Phone orders", "call_center", "USD") }, "time_zone"),
        (ChannelForm { time_zone: "x".repeat(65), ..form("phone", "Phone orders", "call_center", "USD") }, "time_zone"),
    ] {
        match setup::save_channel(s, "admin", None, &f).await {
            Err(ServiceError::Validation(errors)) => assert!(errors.iter().any(|e| e.field == field), "{f:?}: {errors:?}"),
            other => panic!("{f:?}: {other:?}"),
        }
    }
    assert_eq!(rows().await, before, "nothing refused was written");

    let phone = setup::save_channel(s, "admin", None, &form("phone", "  Phone orders ", "call_center", "eur")).await.unwrap();
    let made = channel::Entity::find_by_id(phone).one(&s.db).await.unwrap().unwrap();
    assert_eq!((made.name.as_str(), made.kind.as_str(), made.currency.as_str(), made.closed_at), ("Phone orders", "call_center", "EUR", None));
    assert_eq!(made.time_zone, "UTC", "no time zone typed: UTC");
    let again = setup::save_channel(s, "admin", None, &form("PHONE", "Other", "pos_store", "USD")).await.unwrap_err();
    assert!(matches!(&again, ServiceError::Validation(e) if e[0].field == "code" && e[0].message.contains("exists already")), "{again:?}");
    // Edited: the name and currency; the code and kind stay.
    setup::save_channel(s, "admin", Some(phone), &form("ignored", "Phone & mail orders", "pos_store", "USD")).await.unwrap();
    let edited = channel::Entity::find_by_id(phone).one(&s.db).await.unwrap().unwrap();
    assert_eq!((edited.code.as_str(), edited.name.as_str(), edited.kind.as_str(), edited.currency.as_str()), ("phone", "Phone & mail orders", "call_center", "USD"));
    assert!(matches!(setup::save_channel(s, "admin", Some(9_999), &form("", "X", "", "USD")).await, Err(ServiceError::NotFound(_))));

    // An order on it, then closed: no new order, a message naming it, the old order still there.
    // Its time zone: its orders' times are shown in it (the test epoch is 09:30 UTC, 03:30 in Chicago).
    setup::save_channel(s, "admin", Some(phone), &ChannelForm { time_zone: "America/Chicago".into(), ..form("", "Phone & mail orders", "", "USD") }).await.unwrap();
    assert_eq!(channel::Entity::find_by_id(phone).one(&s.db).await.unwrap().unwrap().time_zone, "America/Chicago");
    let first = OrderBuilder::new(&fx).channel(phone).line("Tent", 1, "100.00").place(s).await;
    let taken = payments::service::orders::detail(s, first.order_id).await.unwrap().order.taken_local;
    assert!(taken.ends_with("CST") && taken.contains(" 03:30 "), "{taken}");
    setup::set_channel_closed(s, "admin", phone, true).await.unwrap();
    let orders = sales_order::Entity::find().count(&s.db).await.unwrap();
    let refused = OrderBuilder::new(&fx).channel(phone).line("Tent", 1, "100.00").try_place(s).await.unwrap_err();
    assert!(refused.to_string().contains("Phone & mail orders is closed"), "{refused}");
    assert_eq!(sales_order::Entity::find().count(&s.db).await.unwrap(), orders, "nothing written");
    assert!(payments::service::orders::detail(s, first.order_id).await.is_ok(), "its orders stay");
    let (_, offered) = payments::service::order_views::choices(&s.db).await.unwrap();
    assert!(offered.iter().all(|c| c.id != phone), "a closed channel is not offered for new orders");
    // Reopened, it takes orders again.
    setup::set_channel_closed(s, "admin", phone, false).await.unwrap();
    OrderBuilder::new(&fx).channel(phone).line("Tent", 1, "100.00").place(s).await;
    let actions: Vec<String> = audit_log::Entity::find().filter(audit_log::Column::Subject.eq("phone")).all(&s.db).await.unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["channel.create", "channel.edit", "channel.edit", "channel.close", "channel.reopen"]);

    // A closed store takes no customer account deposit either.
    setup::set_channel_closed(s, "admin", fx.pos, true).await.unwrap();
    let deposit = payments::service::prepayments::account_deposit(s, "admin", fx.customer_id, fx.pos, "USD", "10.00").await.unwrap_err();
    assert!(deposit.to_string().contains("is closed: it takes no deposits"), "{deposit}");
    setup::set_channel_closed(s, "admin", fx.pos, false).await.unwrap();
    // The web shop closes with its online store.
    setup::set_channel_closed(s, "admin", fx.online, true).await.unwrap();
    let shop = payments::service::storefront::checkout(s, &payments::service::storefront::Checkout { email: "sam@shop.example".into(), name: "Sam".into(), quantities: vec!["1".into()], card: Default::default() }).await;
    assert!(matches!(&shop, Err(e) if e.to_string().contains("web shop is closed")), "{shop:?}");
});

db_test!(connectors_are_set_up_through_the_pages_keys_sealed_and_the_default_one_is_reached, |db| {
    // Issue #43 (R-PAR-5, R-TOK-8): a connector is added with every field checked (nothing
    // written when one is wrong); its API and HMAC keys are stored sealed with the server's key,
    // never in the clear and never in the audit log; the first connector becomes the default and
    // a server without PAYSTAGE_PROCESSOR_URL reaches it at once, another server sharing the
    // database on its next check; "Test connection" tells an accepted key from a refused one.
    use payments::connector::configured::ConnectorStatus;
    use payments::connector::CardEntry;
    use payments::entity::connector;
    use payments::secrets::SecretKey;
    use payments::service::setup::ConnectorForm;
    use payments::testing::{TEST_API_KEY, TEST_MERCHANT_ACCOUNT, TEST_SECRET_KEY};
    let key = SecretKey::from_hex(TEST_SECRET_KEY).unwrap();
    let clock = db.services.clock.clone();
    let s = &Services::configured(db.services.db.clone(), Some(key.clone()), clock.clone()).await.unwrap();
    assert!(matches!(s.configured.as_ref().unwrap().status(), ConnectorStatus::Unusable(why) if why.contains("no connector")));
    let refused = s.connector.describe_token("shopper:card").await;
    assert!(matches!(refused, Err(payments::connector::ConnectorError::Unavailable(_))), "{refused:?}");

    let endpoint = format!("{}/checkout/v72", db.processor);
    let hmac = "5a".repeat(32);
    let good = || ConnectorForm {
        code: "sandbox-one".into(),
        name: "Sandbox one".into(),
        kind: "sandbox".into(),
        endpoint: endpoint.clone(),
        merchant_account: TEST_MERCHANT_ACCOUNT.into(),
        api_key: TEST_API_KEY.into(),
        hmac_key: hmac.clone(),
        card_page: format!("{}/hpp/cards", db.processor),
        key_window_days: "31".into(),
        timeout_seconds: "5".into(),
    };
    let rows = || async { (connector::Entity::find().count(&s.db).await.unwrap(), audit_log::Entity::find().count(&s.db).await.unwrap()) };
    let before = rows().await;
    let with = |f: &dyn Fn(&mut ConnectorForm)| {
        let mut form = good();
        f(&mut form);
        form
    };
    for (form, field) in [
        (with(&|f| f.code = "Bad Code".into()), "code"),
        (with(&|f| f.code = "x".into()), "code"),
        (with(&|f| f.name = "".into()), "name"),
        (with(&|f| f.kind = "stripe".into()), "kind"),
        (with(&|f| f.endpoint = "ftp://x".into()), "endpoint"),
        (with(&|f| f.endpoint = "http://user:pw@127.0.0.1/checkout/v72".into()), "endpoint"),
        (with(&|f| f.endpoint = "javascript:alert(1)".into()), "endpoint"),
        (with(&|f| { f.kind = "adyen".into(); f.endpoint = "http://checkout-test.adyen.com/v72".into(); f.card_page = String::new(); }), "endpoint"),
        (with(&|f| f.merchant_account = "<script>".into()), "merchant_account"),
        (with(&|f| f.api_key = "".into()), "api_key"),
        (with(&|f| f.api_key = "has space".into()), "api_key"),
        (with(&|f| f.hmac_key = "not-hex".into()), "hmac_key"),
        (with(&|f| f.card_page = "//evil.example".into()), "card_page"),
        (with(&|f| f.key_window_days = "0".into()), "key_window_days"),
        (with(&|f| f.timeout_seconds = "60".into()), "timeout_seconds"),
        (with(&|f| f.timeout_seconds = "-1".into()), "timeout_seconds"),
    ] {
        match setup::save_connector(s, "admin", None, &form).await {
            Err(ServiceError::Validation(errors)) => assert!(errors.iter().any(|e| e.field == field), "{field}: {errors:?}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    // A server without a secret key cannot store a key.
    let keyless = Services { secrets: None, ..s.clone() };
    let no_key = setup::save_connector(&keyless, "admin", None, &good()).await.unwrap_err();
    assert!(no_key.to_string().contains("PAYSTAGE_SECRET_KEY"), "{no_key}");
    assert_eq!(rows().await, before, "nothing refused was written");

    let first = setup::save_connector(s, "admin", None, &good()).await.unwrap();
    let row = connector::Entity::find_by_id(first).one(&s.db).await.unwrap().unwrap();
    assert!(row.is_default, "the first connector is the default");
    let (api, mac) = (row.api_key_sealed.clone().unwrap(), row.hmac_key_sealed.clone().unwrap());
    assert!(!api.contains(TEST_API_KEY) && !mac.contains(&hmac), "keys are sealed");
    assert_eq!(key.open("connector:sandbox-one:api_key", &api).unwrap(), TEST_API_KEY);
    let audit = audit_log::Entity::find().all(&s.db).await.unwrap();
    assert!(audit.iter().all(|a| !format!("{:?}", a).contains(TEST_API_KEY) && !format!("{:?}", a).contains(&hmac)), "no key in the audit log");
    assert_eq!(setup::stored_hmac_key(s, "sandbox-one").await.unwrap().as_deref(), Some(hmac.as_str()));
    let code_taken = setup::save_connector(s, "admin", None, &good()).await.unwrap_err();
    assert!(code_taken.to_string().contains("exists already"), "{code_taken}");

    // This server reaches it at once: a card entered on its hosted page, described through it.
    assert_eq!(s.configured.as_ref().unwrap().status(), ConnectorStatus::Using { code: "sandbox-one".into(), endpoint: endpoint.clone() });
    let card = s.enter_card_as_shopper(CardEntry { number: "4111111111111111".into(), expiry: "12/30".into(), holder: "Dana Ruiz".into() }).await.unwrap();
    assert_eq!((card.last_four.as_str(), card.holder.as_str()), ("1111", "Dana Ruiz"));
    assert!(setup::test_connection(s, first).await.unwrap().is_ok());

    // Edited with the keys left empty: they stay. A wrong key: the test says so, and so does use.
    setup::save_connector(s, "admin", Some(first), &ConnectorForm { api_key: String::new(), hmac_key: String::new(), name: "Sandbox 1".into(), ..good() }).await.unwrap();
    assert_eq!(connector::Entity::find_by_id(first).one(&s.db).await.unwrap().unwrap().api_key_sealed, Some(api));
    assert!(setup::test_connection(s, first).await.unwrap().is_ok());
    setup::save_connector(s, "admin", Some(first), &ConnectorForm { api_key: "a-wrong-key".into(), ..good() }).await.unwrap();
    let answer = setup::test_connection(s, first).await.unwrap().unwrap_err();
    assert!(answer.contains("refuses this API key"), "{answer}");
    assert!(s.describe_token(&card.token).await.is_err(), "the wrong key is what this server now uses");
    setup::save_connector(s, "admin", Some(first), &good()).await.unwrap();
    assert!(s.describe_token(&card.token).await.unwrap().is_some());

    // Another server on the same database: the new default, once it checks.
    let other = Services::configured(db.services.db.clone(), Some(key.clone()), clock.clone()).await.unwrap();
    let second = setup::save_connector(s, "admin", None, &ConnectorForm { code: "sandbox-two".into(), name: "Sandbox two".into(), ..good() }).await.unwrap();
    assert!(!connector::Entity::find_by_id(second).one(&s.db).await.unwrap().unwrap().is_default);
    setup::save_merchant_account(s, "admin", second, "yes", "yes").await.unwrap();
    assert!(matches!(s.configured.as_ref().unwrap().status(), ConnectorStatus::Using { code, .. } if code == "sandbox-two"));
    assert!(matches!(other.configured.as_ref().unwrap().status(), ConnectorStatus::Using { code, .. } if code == "sandbox-one"));
    other.reload_connector().await.unwrap();
    assert!(matches!(other.configured.as_ref().unwrap().status(), ConnectorStatus::Using { code, .. } if code == "sandbox-two"));
    assert_eq!(connector::Entity::find().filter(connector::Column::IsDefault.eq(true)).count(&s.db).await.unwrap(), 1, "exactly one default");

    // A server with another secret key cannot open the keys, and says so.
    let wrong = SecretKey::from_hex(&"ab".repeat(32)).unwrap();
    let stranger = Services::configured(db.services.db.clone(), Some(wrong), clock).await.unwrap();
    assert!(matches!(stranger.configured.as_ref().unwrap().status(), ConnectorStatus::Unusable(why) if why.contains("does not open")));
    assert_eq!(setup::stored_hmac_key(&stranger, "sandbox-one").await.unwrap(), None);
});

db_test!(a_channel_pays_through_its_own_connector_and_every_later_request_follows_the_connector_recorded, |db| {
    // Issue #43 (R-PAR-5, R-TOK-8): a channel set up with its own connector takes its orders'
    // cards on that connector's processor, and the authorization, capture and every question
    // about them go there, while other channels use the default connector; changing the
    // channel's connector later does not move what was already paid through the first one. A
    // card taken on one processor is refused on a channel paying through another, and so is a
    // card on file stored with another connector; nothing is written for either.
    use payments::connector::{CardEntry, Connector};
    use payments::domain::pipeline::ProcessStatus;
    use payments::entity::{authorization, channel, payment_line, processor_request, sales_order};
    use payments::secrets::SecretKey;
    use payments::service::orders::CardForm;
    use payments::service::setup::{ChannelForm, ConnectorForm};
    use payments::testing::{fixture, start_sandbox, OrderBuilder, TEST_API_KEY, TEST_MERCHANT_ACCOUNT, TEST_SECRET_KEY};
    let key = SecretKey::from_hex(TEST_SECRET_KEY).unwrap();
    let clock = db.services.clock.clone();
    let s = &Services::configured(db.services.db.clone(), Some(key), clock.clone()).await.unwrap();
    let fx = fixture(s).await;
    payments::testing::enable_pipeline(s, false).await;
    let (other_sandbox, other_base, _, _dir) = start_sandbox(clock.clone()).await;
    let form = |code: &str, name: &str, base: &str| ConnectorForm {
        code: code.into(),
        name: name.into(),
        kind: "sandbox".into(),
        endpoint: format!("{base}/checkout/v72"),
        merchant_account: TEST_MERCHANT_ACCOUNT.into(),
        api_key: TEST_API_KEY.into(),
        hmac_key: "5a".repeat(32),
        card_page: format!("{base}/hpp/cards"),
        key_window_days: "31".into(),
        timeout_seconds: "5".into(),
    };
    // The default connector (the fixture's row) reaches the test's sandbox; "Phone sandbox" another.
    let first = fx.connector_id;
    let unusable = |id: i32| async move { setup::connectors_here(s).await.unwrap().into_iter().find(|c| c.id == id).unwrap().unusable };
    assert_eq!(unusable(first).await.as_deref(), Some("it is not set up on this server yet"), "a row another writer added, until the next check");
    s.reload_connector().await.unwrap();
    assert_eq!(unusable(first).await.as_deref(), Some("it has no endpoint"), "the page says why the fixture's row cannot be used");
    setup::save_connector(s, "admin", Some(first), &form("sandbox", "Processor sandbox", &db.processor)).await.unwrap();
    assert_eq!(unusable(first).await, None);
    let second = setup::save_connector(s, "admin", None, &form("phone-sandbox", "Phone sandbox", &other_base)).await.unwrap();
    let call_center = |connector: &str| ChannelForm { name: "Call center".into(), currency: "USD".into(), time_zone: "UTC".into(), connector: connector.into(), ..Default::default() };
    let unknown = setup::save_channel(s, "admin", Some(fx.call_center), &call_center("no-such-connector")).await.unwrap_err();
    assert!(matches!(&unknown, ServiceError::Validation(e) if e[0].field == "connector"), "{unknown:?}");
    assert_eq!(channel::Entity::find_by_id(fx.call_center).one(&s.db).await.unwrap().unwrap().connector_id, None, "nothing refused was written");
    setup::save_channel(s, "admin", Some(fx.call_center), &call_center("phone-sandbox")).await.unwrap();
    assert_eq!(channel::Entity::find_by_id(fx.call_center).one(&s.db).await.unwrap().unwrap().connector_id, Some(second));
    let edit = audit_log::Entity::find().filter(audit_log::Column::Action.eq("channel.edit")).all(&s.db).await.unwrap();
    assert!(edit.iter().any(|a| a.after.as_deref().is_some_and(|v| v.contains(r#""connector":"phone-sandbox""#))), "{edit:?}");

    let card = |t: payments::connector::CardToken| CardForm { token: t.token, card_type: t.card_type, last_four: t.last_four, holder: t.holder, expiry: t.expiry };
    let entry = || CardEntry { number: "4111111111111111".into(), expiry: "12/30".into(), holder: "Dana Ruiz".into() };
    let on_second = card(s.enter_card_as_shopper_on(Some(second), entry()).await.unwrap());
    let on_first = card(s.enter_card_as_shopper_on(None, entry()).await.unwrap());
    let orders_now = || async { sales_order::Entity::find().count(&s.db).await.unwrap() };
    let before = orders_now().await;
    // A card taken on the default processor, on the channel paying through the other: refused.
    let mut wrong = OrderBuilder::new(&fx).line("Tent", 1, "150.00").no_card();
    wrong.form.card = on_first.clone();
    let refused = wrong.try_place(s).await.unwrap_err();
    assert!(matches!(&refused, ServiceError::Validation(e) if e[0].field == "card"), "{refused:?}");
    // And the other way round, at the store paying through the default connector.
    let mut wrong = OrderBuilder::new(&fx).channel(fx.pos).line("Tent", 1, "150.00").no_card();
    wrong.form.card = on_second.clone();
    assert!(wrong.try_place(s).await.is_err());
    // A card on file is stored with the default connector (R-TOK-8): not for this channel.
    let on_file = payments::service::cards::add(s, "finance", fx.customer_id, &on_first, true).await.unwrap();
    let refused = OrderBuilder::new(&fx).line("Tent", 1, "150.00").saved_card(on_file.id).try_place(s).await.unwrap_err();
    assert!(matches!(&refused, ServiceError::Validation(e) if e[0].field == "saved_card_id" && e[0].message.contains("Phone sandbox")), "{refused:?}");
    assert_eq!(orders_now().await, before, "nothing refused was written");

    // The card taken on the channel's own processor: authorized there, and recorded so.
    let mut right = OrderBuilder::new(&fx).line("Tent", 2, "150.00").no_card();
    right.form.card = on_second;
    let placed = right.try_place(s).await.unwrap();
    assert_eq!(placed.payment_status, payments::domain::order::PaymentStatus::Authorized, "{placed:?}");
    let line = payment_line::Entity::find().filter(payment_line::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!(line.connector_id, Some(second));
    let auth = authorization::Entity::find().filter(authorization::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!(auth.connector_id, second);
    // The channel goes back to the default connector; the order's capture still goes where its
    // authorization is.
    setup::save_channel(s, "admin", Some(fx.call_center), &call_center("")).await.unwrap();
    let d = payments::service::orders::detail(s, placed.order_id).await.unwrap();
    let out = payments::pipeline::invoice(s, "finance", placed.order_id, &[(d.lines[0].id, 2)]).await.unwrap();
    assert_eq!(out.status, ProcessStatus::Completed, "{out:?}");
    let requests = processor_request::Entity::find().filter(processor_request::Column::OrderId.eq(placed.order_id)).all(&s.db).await.unwrap();
    assert!(requests.len() >= 2 && requests.iter().all(|r| r.connector_id == second), "{requests:?}");
    // What each processor holds, read from its own books.
    let books = |sandbox: &payments::sandbox::Sandbox| {
        let engine = payments::connector::simulator::ProcessorSimulator::new(sandbox.store().clone(), clock.clone());
        async move { engine.ledger().await.unwrap().unwrap() }
    };
    let (theirs, ours) = (books(&other_sandbox).await, books(&db.sandbox).await);
    assert_eq!(theirs.authorizations.get(&auth.processor_reference), Some(&30_000), "authorized and captured on the channel's processor: {theirs:?}");
    assert!(ours.authorizations.is_empty() && ours.captures.is_empty(), "nothing reached the default processor: {ours:?}");
    // An order taken now on the call center uses the default connector again.
    let placed = OrderBuilder::new(&fx).line("Lamp", 1, "20.00").place(s).await;
    let auth = authorization::Entity::find().filter(authorization::Column::OrderId.eq(placed.order_id)).one(&s.db).await.unwrap().unwrap();
    assert_eq!(auth.connector_id, first);
});

db_test!(customers_are_created_edited_searched_and_deactivated_and_a_deactivated_one_takes_no_orders, |db| {
    // Issue #43: a customer is created and edited with every field checked (nothing written when
    // one is wrong), account and e-mail unique whatever their case; found by any part of account,
    // name, e-mail or phone (wildcards typed are taken literally); deactivated, they are not
    // offered and take no order or card, while their orders stay. Every change is audited.
    use payments::entity::customer;
    use payments::service::customers::{self, CustomerForm};
    use payments::testing::{fixture, OrderBuilder};
    let s = &db.services;
    let fx = fixture(s).await;
    payments::testing::enable_pipeline(s, true).await;
    let good = || CustomerForm {
        account: "C-2001".into(),
        name: "Dana Ruiz".into(),
        email: "Dana.Ruiz@Mail.Example".into(),
        phone: "+1 (555) 010-0200".into(),
        billing_street: "1 Main Street".into(),
        billing_city: "Springfield".into(),
        billing_postal_code: "12345".into(),
        billing_country: "us".into(),
    };
    let with = |f: &dyn Fn(&mut CustomerForm)| {
        let mut form = good();
        f(&mut form);
        form
    };
    let rows = || async { (customer::Entity::find().count(&s.db).await.unwrap(), audit_log::Entity::find().count(&s.db).await.unwrap()) };
    let before = rows().await;
    for (form, field) in [
        (with(&|f| f.account = "".into()), "account"),
        (with(&|f| f.account = "C 2001".into()), "account"),
        (with(&|f| f.account = "x".repeat(21)), "account"),
        (with(&|f| f.name = " ".into()), "name"),
        (with(&|f| f.name = "Two\nlines".into()), "name"),
        (with(&|f| f.email = "not-an-email".into()), "email"),
        (with(&|f| f.email = "a@b@c.example".into()), "email"),
        (with(&|f| f.phone = "call me".into()), "phone"),
        (with(&|f| f.billing_street = "x".repeat(121)), "billing_street"),
        (with(&|f| f.billing_country = "USA".into()), "billing_country"),
        (with(&|f| f.billing_postal_code = "\u{0}".into()), "billing_postal_code"),
    ] {
        match customers::save(s, "finance", None, &form).await {
            Err(ServiceError::Validation(errors)) => assert!(errors.iter().any(|e| e.field == field), "{field}: {errors:?}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(rows().await, before, "nothing refused was written");

    let id = customers::save(s, "finance", None, &good()).await.unwrap();
    let c = customers::detail(&s.db, id).await.unwrap();
    assert_eq!((c.email.as_deref(), c.billing_country.as_deref(), c.active), (Some("dana.ruiz@mail.example"), Some("US"), true));
    for (form, field) in [(with(&|f| f.account = "c-2001".into()), "account"), (with(&|f| { f.account = "C-2002".into(); f.email = "DANA.RUIZ@mail.example".into(); }), "email")] {
        let e = customers::save(s, "finance", None, &form).await.unwrap_err();
        assert!(matches!(&e, ServiceError::Validation(v) if v[0].field == field), "{field}: {e:?}");
    }
    // Edited, keeping its own e-mail; emptied fields are stored as none.
    customers::save(s, "callcenter", Some(id), &with(&|f| { f.name = "Dana Ruiz-Lopez".into(); f.phone = String::new(); })).await.unwrap();
    let edited = customers::detail(&s.db, id).await.unwrap();
    assert_eq!((edited.name.as_str(), edited.phone.as_deref()), ("Dana Ruiz-Lopez", None));

    // Found by any part, any case; a typed % or _ is literal.
    for q in ["ruiz-l", "C-20", "MAIL.EXAMPLE", "springfield"] {
        let found = customers::search(&s.db, q, false).await.unwrap();
        assert_eq!(found.iter().any(|f| f.id == id), q != "springfield", "{q}");
    }
    assert!(customers::search(&s.db, "%", false).await.unwrap().is_empty());
    assert!(customers::search(&s.db, "_", false).await.unwrap().iter().all(|c| c.account.contains('_') || c.name.contains('_') || c.email.as_deref().unwrap_or("").contains('_')));

    // An order, then deactivated: not offered, no new order, card or deposit; the old order stays.
    let first = OrderBuilder::new(&fx).customer(id).line("Tent", 1, "100.00").place(s).await;
    customers::set_active(s, "finance", id, false).await.unwrap();
    assert!(customers::search(&s.db, "ruiz", false).await.unwrap().is_empty());
    assert_eq!(customers::search(&s.db, "ruiz", true).await.unwrap().len(), 1);
    let (offered, _) = payments::service::order_views::choices(&s.db).await.unwrap();
    assert!(offered.iter().all(|c| c.id != id));
    let orders = payments::entity::sales_order::Entity::find().count(&s.db).await.unwrap();
    let refused = OrderBuilder::new(&fx).customer(id).line("Tent", 1, "100.00").try_place(s).await.unwrap_err();
    assert!(refused.to_string().contains("is deactivated"), "{refused}");
    assert_eq!(payments::entity::sales_order::Entity::find().count(&s.db).await.unwrap(), orders, "nothing written");
    assert!(payments::service::orders::detail(s, first.order_id).await.is_ok());
    let deposit = payments::service::prepayments::account_deposit(s, "finance", id, fx.pos, "USD", "10.00").await.unwrap_err();
    assert!(deposit.to_string().contains("is deactivated: they take no deposits"), "{deposit}");
    customers::set_active(s, "finance", id, true).await.unwrap();
    payments::service::prepayments::account_deposit(s, "finance", id, fx.pos, "USD", "10.00").await.unwrap();
    OrderBuilder::new(&fx).customer(id).line("Tent", 1, "100.00").place(s).await;
    let actions: Vec<String> = audit_log::Entity::find().filter(audit_log::Column::Subject.eq("C-2001")).all(&s.db).await.unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["customer.create", "customer.edit", "customer.deactivate", "customer.activate"]);
});

db_test!(the_same_code_saved_twice_at_once_is_refused_with_a_message_not_an_internal_error, |db| {
    // Issue #43 (noticed on the first part): two administrators adding a channel, a connector or a
    // customer with the same code at the same moment: one is added, the other is told the code is
    // taken (the database's unique index decides when both checked before either wrote).
    use payments::service::customers::{self, CustomerForm};
    use payments::service::setup::{ChannelForm, ConnectorForm};
    let s = &db.services;
    for round in 0..4 {
        let channel = ChannelForm { code: format!("race-{round}"), name: "Race".into(), kind: "call_center".into(), currency: "USD".into(), time_zone: "Europe/Berlin".into(), connector: String::new() };
        let (a, b) = tokio::join!(setup::save_channel(s, "admin", None, &channel), setup::save_channel(s, "admin2", None, &channel));
        let connector = ConnectorForm {
            code: format!("race-{round}"),
            name: "Race".into(),
            kind: "adyen".into(),
            endpoint: "https://checkout-test.adyen.com/v72".into(),
            merchant_account: "Race".into(),
            api_key: "k".into(),
            ..Default::default()
        };
        let (c, d) = tokio::join!(setup::save_connector(s, "admin", None, &connector), setup::save_connector(s, "admin2", None, &connector));
        let customer = CustomerForm { account: format!("RACE-{round}"), name: "Race".into(), ..Default::default() };
        let (e, f) = tokio::join!(customers::save(s, "finance", None, &customer), customers::save(s, "callcenter", None, &customer));
        for (what, pair, field) in [("channel", (a, b), "code"), ("connector", (c, d), "code"), ("customer", (e, f), "account")] {
            let oks = [&pair.0, &pair.1].iter().filter(|r| r.is_ok()).count();
            assert_eq!(oks, 1, "{what} round {round}: {pair:?}");
            let refused = if pair.0.is_err() { &pair.0 } else { &pair.1 };
            assert!(matches!(refused, Err(ServiceError::Validation(v)) if v[0].field == field), "{what} round {round}: {refused:?}");
        }
    }
});
