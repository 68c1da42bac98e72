//! The processor simulator's store (issue #41): its books are kept apart from Paystage's, and an
//! earlier database's simulator rows move there once.
use payments::connector::simulator::entity::{sim_authorization as sa, sim_capture as sc, sim_fault as sf, sim_refund as sr, sim_token as st, sim_transaction as stx};
use payments::connector::simulator::{self, store};
use payments::connector::{faults, Connector};
use payments::db_test;
use payments::domain::money::{Currency, Money};
use payments::testing::{card_order, sim};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait, Set, Statement};

/// The `sim_` tables of `db`'s own schema (Paystage's tables live there; the store is elsewhere).
async fn sim_tables(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'sim%' ORDER BY 1",
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sim%' ORDER BY 1",
    };
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|r| r.try_get::<String>("", "name").unwrap()).collect()
}

db_test!(the_processor_keeps_its_books_in_the_sandboxs_store_and_none_among_paystages, |db| {
    // Issue #42: the processor is a service of its own. A card payment writes the processor's
    // token, authorization and record to the sandbox's store; Paystage's database has no table of
    // the processor's, and Paystage reached it only over HTTP.
    let s = &db.services;
    let (_fx, placed, _d) = card_order(s, "Tent", 1, "150.00").await;
    assert!(placed.payment_status == payments::domain::order::PaymentStatus::Authorized);
    assert_eq!(sim_tables(&s.db).await, Vec::<String>::new(), "no processor table among Paystage's");
    assert_eq!(sa::Entity::find().count(sim(s)).await.unwrap(), 1, "the authorization is in the sandbox's store");
    assert!(stx::Entity::find().count(sim(s)).await.unwrap() >= 1);
    assert!(payments::entity::processor_send::Entity::find().count(&s.db).await.unwrap() >= 1, "Paystage recorded what it sent over HTTP");
});

db_test!(an_earlier_databases_simulator_rows_move_to_its_store_once, |db| {
    // Before the separation the simulator's tables were Paystage's (migrations 2 and 3). Their
    // rows move to the sandbox's store once (`paystage sandbox --import-from`), the old tables are
    // dropped, nothing is copied twice, and the moved ledger works: a capture on the moved
    // authorization is taken, a fault added after the move gets an id of its own.
    let s = &db.services;
    for t in store::ledger_tables(s.db.get_database_backend()) {
        s.db.execute(&t).await.unwrap();
    }
    let now = s.now();
    st::ActiveModel { token: Set("tok_old".into()), variant: Set("visa".into()), card_type: Set("Visa".into()), last_four: Set("1111".into()), holder: Set("Old".into()), expiry: Set("12/30".into()), behaviour: Set("approve".into()), created_at: Set(now) }
        .insert(&s.db)
        .await
        .unwrap();
    sa::ActiveModel { reference: Set("auth_old".into()), token: Set("tok_old".into()), currency: Set("USD".into()), amount_minor: Set(10_000), captured_minor: Set(4_000), supports_multiple_captures: Set(true), status: Set("open".into()), created_at: Set(now) }
        .insert(&s.db)
        .await
        .unwrap();
    sc::ActiveModel { reference: Set("cap_old".into()), authorization_reference: Set("auth_old".into()), amount_minor: Set(4_000), refunded_minor: Set(1_000), created_at: Set(now) }
        .insert(&s.db)
        .await
        .unwrap();
    sr::ActiveModel { reference: Set("ref_old".into()), capture_reference: Set("cap_old".into()), amount_minor: Set(1_000), created_at: Set(now) }.insert(&s.db).await.unwrap();
    stx::ActiveModel { tracking_id: Set("t-old".into()), command: Set("capture".into()), amount_minor: Set(4_000), outcome: Set("approved".into()), reference: Set(Some("cap_old".into())), response: Set("{}".into()), created_at: Set(now) }
        .insert(&s.db)
        .await
        .unwrap();
    let old_fault = sf::ActiveModel { id: Set(41), point: Set("void".into()), kind: Set("error_before".into()), rate: Set("1".into()), remaining: Set(None), latency_ms: Set(0), created_at: Set(now), fired: Set(3) }
        .insert(&s.db)
        .await
        .unwrap();
    assert_eq!(sim_tables(&s.db).await.len(), 6);

    // As at a start: a new connection (this one's statements were prepared before the tables were
    // made again here, which PostgreSQL refuses to run against the new ones).
    let paystage = payments::db::connect(&db.url).await.unwrap();
    let moved = store::import_earlier(&paystage, sim(s)).await.unwrap();
    assert_eq!(moved, store::Imported { rows: 6, tables_dropped: 6 });
    assert_eq!(sim_tables(&s.db).await, Vec::<String>::new(), "the old tables are gone");
    let a = sa::Entity::find_by_id("auth_old".to_string()).one(sim(s)).await.unwrap().expect("the authorization moved");
    assert_eq!((a.amount_minor, a.captured_minor), (10_000, 4_000));
    assert_eq!(sc::Entity::find_by_id("cap_old".to_string()).one(sim(s)).await.unwrap().unwrap().refunded_minor, 1_000);
    assert_eq!(faults::list(sim(s)).await.unwrap().iter().map(|f| (f.id, f.fired)).collect::<Vec<_>>(), vec![(old_fault.id, 3)]);

    // A second start moves nothing.
    assert_eq!(store::import_earlier(&paystage, sim(s)).await.unwrap(), store::Imported::default());
    // The moved ledger is the processor's: what is left on the authorization can be captured.
    let processor = simulator::ProcessorSimulator::new(sim(s).clone(), s.clock.clone());
    let c = processor.capture("t-new", "auth_old", Money::from_minor(6_000, Currency::USD), false).await.unwrap();
    assert_eq!(c.amount.minor(), 6_000);
    assert!(processor.capture("t-more", "auth_old", Money::from_minor(1, Currency::USD), false).await.is_err(), "nothing is left on it");
    let new_fault = faults::add(sim(s), s.now(), "capture", "latency", "1", "1", "1").await.unwrap();
    assert!(new_fault > old_fault.id, "the faults' ids continue after the moved ones: {new_fault}");

    // Another earlier database, into this store that now holds records: refused, nothing moved
    // and nothing dropped (its rows are not this store's).
    for t in store::ledger_tables(paystage.get_database_backend()) {
        paystage.execute(&t).await.unwrap();
    }
    stx::ActiveModel { tracking_id: Set("t-elsewhere".into()), command: Set("capture".into()), amount_minor: Set(500), outcome: Set("approved".into()), reference: Set(None), response: Set("{}".into()), created_at: Set(now) }
        .insert(&paystage)
        .await
        .unwrap();
    let again = payments::db::connect(&db.url).await.unwrap();
    let refused = store::import_earlier(&again, sim(s)).await.unwrap_err();
    assert!(refused.to_string().contains("nothing was moved or dropped"), "{refused}");
    assert_eq!(sim_tables(&again).await.len(), 6, "the other database keeps its tables");
    assert_eq!(stx::Entity::find().count(&again).await.unwrap(), 1);
    assert!(stx::Entity::find_by_id("t-elsewhere".to_string()).one(sim(s)).await.unwrap().is_none());
});
